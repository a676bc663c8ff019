// syncbn-bench-nccl: the GPU Communicator under mpirun, checked and timed (after nccl-tests).
//
// First a self-test of every collective across the ranks (broadcast, allgather, split, barrier,
// non-blocking allreduce, host-memory staging), then a sweep of allreduce sizes: each row checks
// the sum against an independent computation, then times the collective.
//
//   mpirun -np 2 syncbn-bench-nccl -b 8 -e 128M -f 2 [-d float32] [--op iallreduce]
//          [--backend nccl|mpi] [-n 20] [-w 5]
//
// Each rank takes GPU local_rank % visible GPUs (docs/DESIGN.md §5). Two ranks on one GPU need
// SYNCBN_NCCL_HOSTID_PER_RANK=1 with NCCL (see nccl_communicator.h); the bandwidth is then that of
// NCCL's network transport, not of the GPU. Columns: time is per collective, the slowest rank's;
// algbw = bytes / time; busbw = algbw * 2 (P - 1) / P, the bandwidth each rank's links carry in a
// ring allreduce (nccl-tests' definition), comparable across P. Exits with 1 when any value is
// wrong, 77 (skipped) without a GPU. One JSON line follows each table row.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "bench_flags.h"
#include "syncbn/device.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/nccl_communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "util/clock.h"

namespace po = boost::program_options;
using namespace syncbn;
using dist::DataType;

namespace {

constexpr int kSkipped = 77;  // the exit code of a run without a GPU (ctest's skip convention)

// "8", "4K", "64M", "1G" (powers of 1024, as nccl-tests).
int64_t parse_bytes(const std::string& text) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    SYNCBN_FAIL("invalid size '", text, "': expected a number with an optional K, M or G");
  }
  const std::string suffix = text.substr(used);
  int64_t unit = 1;
  if (suffix == "K" || suffix == "k") {
    unit = int64_t{1} << 10;
  } else if (suffix == "M" || suffix == "m") {
    unit = int64_t{1} << 20;
  } else if (suffix == "G" || suffix == "g") {
    unit = int64_t{1} << 30;
  } else {
    SYNCBN_CHECK(suffix.empty(), "invalid size '", text,
                 "': expected a number with an optional K, M or G");
  }
  SYNCBN_CHECK(value > 0, "size '", text, "' must be positive");
  return value * unit;
}

DataType parse_type(const std::string& name) {
  for (DataType type : {DataType::kFloat32, DataType::kFloat64, DataType::kInt32, DataType::kInt64,
                        DataType::kUint8}) {
    if (name == dist::data_type_name(type)) return type;
  }
  SYNCBN_FAIL("unknown dtype '", name, "': expected float32, float64, int32, int64 or uint8");
}

// The test data: small integers, exact in every type, different on every rank and element.
uint64_t pattern(int rank, int64_t i) { return static_cast<uint64_t>((i * 7 + rank * 3) % 11 + 1); }

template <class T>
std::vector<std::byte> fill_typed(int64_t count, int rank) {
  std::vector<std::byte> bytes(static_cast<std::size_t>(count) * sizeof(T));
  T* values = reinterpret_cast<T*>(bytes.data());
  for (int64_t i = 0; i < count; ++i) values[i] = static_cast<T>(pattern(rank, i));
  return bytes;
}

std::vector<std::byte> fill(DataType type, int64_t count, int rank) {
  switch (type) {
    case DataType::kFloat32:
      return fill_typed<float>(count, rank);
    case DataType::kFloat64:
      return fill_typed<double>(count, rank);
    case DataType::kInt32:
      return fill_typed<int32_t>(count, rank);
    case DataType::kInt64:
      return fill_typed<int64_t>(count, rank);
    case DataType::kUint8:
      return fill_typed<uint8_t>(count, rank);
  }
  return {};
}

// Elements of `bytes` that differ from the sum over `ranks` of the pattern (uint8 sums wrap, as
// NCCL's and MPI's do).
template <class T>
int64_t wrong_typed(const std::vector<std::byte>& bytes, int64_t count, int ranks) {
  const T* values = reinterpret_cast<const T*>(bytes.data());
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t sum = 0;
    for (int r = 0; r < ranks; ++r) sum += pattern(r, i);
    if (values[i] != static_cast<T>(sum)) ++wrong;
  }
  return wrong;
}

int64_t count_wrong(DataType type, const std::vector<std::byte>& bytes, int64_t count, int ranks) {
  switch (type) {
    case DataType::kFloat32:
      return wrong_typed<float>(bytes, count, ranks);
    case DataType::kFloat64:
      return wrong_typed<double>(bytes, count, ranks);
    case DataType::kInt32:
      return wrong_typed<int32_t>(bytes, count, ranks);
    case DataType::kInt64:
      return wrong_typed<int64_t>(bytes, count, ranks);
    case DataType::kUint8:
      return wrong_typed<uint8_t>(bytes, count, ranks);
  }
  return count;
}

// Device memory of one rank, freed at scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer(Device device, std::size_t bytes)
      : device_(device), ptr_(device_allocate(device, bytes)) {}
  ~DeviceBuffer() { device_free(device_, ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }

 private:
  Device device_;
  void* ptr_;
};

void to_device(void* dst, Device device, const std::vector<std::byte>& src) {
  device_copy(dst, device, src.data(), Device::cpu(), src.size());
}

std::vector<std::byte> to_host(const void* src, Device device, std::size_t bytes) {
  std::vector<std::byte> host(bytes);
  device_copy(host.data(), Device::cpu(), src, device, bytes);  // waits for the GPU's queue
  return host;
}

struct Settings {
  std::string backend = "nccl";
  std::string op = "allreduce";
  DataType type = DataType::kFloat32;
  int64_t min_bytes = 8;
  int64_t max_bytes = int64_t{64} << 20;
  int64_t step_factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
};

// One allreduce of `count` elements in place, as the benchmark's --op says.
void run_op(dist::Communicator& comm, const Settings& settings, void* data, int64_t count,
            Device device) {
  if (settings.op == "iallreduce") {
    comm.iallreduce_sum(data, count, settings.type, device)->wait();
  } else {
    comm.allreduce_sum(data, count, settings.type, device);
  }
}

// Sum over the world of a host value (MPI world: independent of the backend under test).
int64_t world_sum(dist::Communicator& world, int64_t value) {
  world.allreduce_sum(&value, 1, DataType::kInt64);
  return value;
}

double world_max(dist::Communicator& world, double value) {
  std::vector<double> all(static_cast<std::size_t>(world.size()));
  world.allgather(&value, all.data(), 1, DataType::kFloat64);
  double most = value;
  for (double v : all) most = std::max(most, v);
  return most;
}

// Self-test of every collective on `comm` across the ranks. Returns the wrong values on this rank.
int64_t self_test(dist::Communicator& world, dist::Communicator& comm, Device gpu) {
  const int rank = comm.rank();
  const int P = comm.size();
  int64_t total_wrong = 0;
  auto report = [&](const char* what, int64_t wrong) {
    const int64_t all = world_sum(world, wrong);
    total_wrong += wrong;
    if (world.rank() == 0) {
      std::printf("# self-test %-34s %s", what, all == 0 ? "ok\n" : "FAILED: ");
      if (all != 0) std::printf("%lld wrong\n", static_cast<long long>(all));
    }
  };

  {  // broadcast from the last rank, of a count that is no multiple of anything
    const int64_t count = 1003;
    const int root = P - 1;
    DeviceBuffer buffer(gpu, count * sizeof(float));
    std::vector<std::byte> values =
        rank == root ? fill(DataType::kFloat32, count, root) : std::vector<std::byte>(count * 4);
    to_device(buffer.get(), gpu, values);
    comm.broadcast(buffer.get(), count, DataType::kFloat32, root, gpu);
    const auto got = to_host(buffer.get(), gpu, count * sizeof(float));
    report("broadcast (float32, root P-1)", got == fill(DataType::kFloat32, count, root) ? 0 : 1);
  }
  {  // allgather: rank r's block at r * count
    const int64_t count = 517;
    DeviceBuffer send(gpu, count * sizeof(int32_t));
    DeviceBuffer recv(gpu, count * P * sizeof(int32_t));
    to_device(send.get(), gpu, fill(DataType::kInt32, count, rank));
    comm.allgather(send.get(), recv.get(), count, DataType::kInt32, gpu);
    const auto got = to_host(recv.get(), gpu, count * P * sizeof(int32_t));
    int64_t wrong = 0;
    for (int r = 0; r < P; ++r) {
      const auto expected = fill(DataType::kInt32, count, r);
      if (std::memcmp(got.data() + r * count * 4, expected.data(), count * 4) != 0) ++wrong;
    }
    report("allgather (int32)", wrong);
  }
  {  // non-blocking allreduce, waited on the compute stream
    const int64_t count = 12345;
    DeviceBuffer buffer(gpu, count * sizeof(double));
    to_device(buffer.get(), gpu, fill(DataType::kFloat64, count, rank));
    auto request = comm.iallreduce_sum(buffer.get(), count, DataType::kFloat64, gpu);
    request->wait();
    const auto got = to_host(buffer.get(), gpu, count * sizeof(double));
    report("iallreduce + wait (float64)", count_wrong(DataType::kFloat64, got, count, P));
  }
  {  // host memory, staged through the GPU by the NCCL backend
    const int64_t count = 77;
    auto values = fill(DataType::kInt64, count, rank);
    comm.allreduce_sum(values.data(), count, DataType::kInt64);
    report("allreduce of host memory (int64)", count_wrong(DataType::kInt64, values, count, P));
    const std::vector<std::string> names = comm.allgather_strings("rank" + std::to_string(rank));
    int64_t wrong = static_cast<int64_t>(names.size()) != P;
    for (std::size_t r = 0; r < names.size(); ++r) wrong += names[r] != "rank" + std::to_string(r);
    report("allgather_strings (host)", wrong);
  }
  {  // split by parity, keys reversing the order; allreduce inside each group
    const int color = rank % 2;
    auto group = comm.split(color, -rank);
    int64_t wrong = group == nullptr;
    if (group) {
      int members = 0;
      int expected_rank = 0;  // ranks of my color above me come first
      int64_t expected_sum = 0;
      for (int r = 0; r < P; ++r) {
        if (r % 2 != color) continue;
        ++members;
        expected_sum += r + 1;
        if (r > rank) ++expected_rank;
      }
      wrong += group->size() != members;
      wrong += group->rank() != expected_rank;
      DeviceBuffer value(gpu, sizeof(int64_t));
      const int64_t mine = rank + 1;
      std::vector<std::byte> bytes(sizeof(mine));
      std::memcpy(bytes.data(), &mine, sizeof(mine));
      to_device(value.get(), gpu, bytes);
      group->allreduce_sum(value.get(), 1, DataType::kInt64, gpu);
      const auto got = to_host(value.get(), gpu, sizeof(int64_t));
      int64_t sum = 0;
      std::memcpy(&sum, got.data(), sizeof(sum));
      wrong += sum != expected_sum;
    }
    report("split (parity, reversed keys)", wrong);
    // Rank 0 joins no group: it gets nullptr, the others one group of P - 1.
    auto rest = comm.split(rank == 0 ? -1 : 0, rank);
    wrong = rank == 0 ? rest != nullptr : (rest == nullptr || rest->size() != P - 1);
    if (rest) rest->barrier();
    report("split (rank 0 without color)", wrong);
  }
  comm.barrier();
  report("barrier", 0);
  return total_wrong;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Runtime runtime;
  return dist::run_and_abort_on_error([&] {
    auto world = runtime.world();
    Settings settings;
    std::string dtype = "float32", min_bytes = "8", max_bytes = "64M";
    int device = -1;
    int check = 1;
    po::options_description options("syncbn-bench-nccl options");
    options.add_options()("help,h", "show this help")(
        "backend", po::value(&settings.backend)->default_value(settings.backend),
        "communicator under test: nccl or mpi (device memory staged through the host)")(
        "op", po::value(&settings.op)->default_value(settings.op),
        "allreduce (blocking, compute stream) or iallreduce (communication stream, then wait)")(
        "dtype,d", po::value(&dtype)->default_value(dtype),
        "float32, float64, int32, int64, uint8")(
        "min-bytes,b", po::value(&min_bytes)->default_value(min_bytes), "smallest size (K, M, G)")(
        "max-bytes,e", po::value(&max_bytes)->default_value(max_bytes), "largest size (K, M, G)")(
        "step-factor,f", po::value(&settings.step_factor)->default_value(settings.step_factor),
        "size multiplier between rows")(
        "iters,n", po::value(&settings.iters)->default_value(settings.iters), "timed iterations")(
        "warmup-iters,w", po::value(&settings.warmup)->default_value(settings.warmup),
        "untimed iterations first")("check,c", po::value(&check)->default_value(check),
                                    "check every size's result (1) or not (0)")(
        "device", po::value(&device)->default_value(device),
        "GPU of this rank; -1: local rank % visible GPUs");
    po::variables_map vm;
    if (!bench::parse_flags(argc, argv, options, world->rank() == 0, vm)) return 0;
    settings.type = parse_type(dtype);
    settings.min_bytes = parse_bytes(min_bytes);
    settings.max_bytes = parse_bytes(max_bytes);
    settings.check = check != 0;
    SYNCBN_CHECK(settings.backend == "nccl" || settings.backend == "mpi",
                 "--backend must be nccl or mpi, got '", settings.backend, "'");
    SYNCBN_CHECK(settings.op == "allreduce" || settings.op == "iallreduce",
                 "--op must be allreduce or iallreduce, got '", settings.op, "'");
    SYNCBN_CHECK(settings.min_bytes <= settings.max_bytes, "--min-bytes exceeds --max-bytes");
    SYNCBN_CHECK(settings.step_factor >= 2 && settings.iters > 0 && settings.warmup >= 0,
                 "need --step-factor >= 2, --iters > 0, --warmup-iters >= 0");

    const int devices = cuda_device_count();
    if (devices == 0) {
      // Skipped, not failed: ctest's SKIP_RETURN_CODE 77 (CI machines have no GPU).
      if (world->rank() == 0) std::fprintf(stderr, "syncbn-bench-nccl: no CUDA device; skipped\n");
      return kSkipped;
    }
    if (device < 0) device = world->local_rank() % devices;
    SYNCBN_CHECK(device < devices, "--device ", device, ": this process sees ", devices, " GPUs");
    const Device gpu = Device::cuda(device);
    set_current_device(gpu);

    // Where every rank runs, and whether ranks share a GPU.
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    const auto places =
        world->allgather_strings(std::string(host) + " cuda:" + std::to_string(device));
    const bool shared_gpu =
        std::set<std::string>(places.begin(), places.end()).size() < places.size();

    std::shared_ptr<dist::Communicator> comm =
        settings.backend == "nccl" ? dist::make_nccl_communicator(world, device) : world;
    const int P = comm->size();
    if (world->rank() == 0) {
      std::printf(
          "# syncbn-bench-nccl: backend %s%s, %d ranks, op %s sum, dtype %s, iters %d, "
          "warmup %d\n",
          settings.backend.c_str(),
          settings.backend == "nccl" ? (" (NCCL " + dist::nccl_version() + ")").c_str() : "", P,
          settings.op.c_str(), dtype.c_str(), settings.iters, settings.warmup);
      for (int r = 0; r < P; ++r) std::printf("#   rank %d on %s\n", r, places[r].c_str());
      if (shared_gpu) {
        std::printf(
            "# note: ranks share a GPU; with NCCL they talk through its network transport "
            "(SYNCBN_NCCL_HOSTID_PER_RANK=1): the bandwidth is not the GPU's\n");
      }
      std::fflush(stdout);
    }

    int64_t wrong_total = self_test(*world, *comm, gpu);

    const std::size_t element = dist::element_size(settings.type);
    DeviceBuffer buffer(gpu, static_cast<std::size_t>(settings.max_bytes) + element);
    if (world->rank() == 0) {
      std::printf("# %12s %12s %8s %12s %12s %12s %8s\n", "size(B)", "count", "type", "time(us)",
                  "algbw(GB/s)", "busbw(GB/s)", "#wrong");
    }
    double busbw_sum = 0;
    int rows = 0;
    for (int64_t bytes = settings.min_bytes; bytes <= settings.max_bytes;
         bytes *= settings.step_factor) {
      const int64_t count = std::max<int64_t>(1, bytes / static_cast<int64_t>(element));
      const int64_t size_bytes = count * static_cast<int64_t>(element);

      int64_t wrong = 0;
      if (settings.check) {
        to_device(buffer.get(), gpu, fill(settings.type, count, comm->rank()));
        run_op(*comm, settings, buffer.get(), count, gpu);
        wrong = count_wrong(settings.type, to_host(buffer.get(), gpu, size_bytes), count, P);
      }
      // Timing on zeros: sums stay zero, whatever the number of iterations.
      device_set_zero(buffer.get(), gpu, size_bytes);
      for (int i = 0; i < settings.warmup; ++i) run_op(*comm, settings, buffer.get(), count, gpu);
      comm->barrier();
      std::byte probe{};
      const double start = now_seconds();
      for (int i = 0; i < settings.iters; ++i) run_op(*comm, settings, buffer.get(), count, gpu);
      device_copy(&probe, Device::cpu(), buffer.get(), gpu, 1);  // waits for the last one
      const double seconds = world_max(*world, (now_seconds() - start) / settings.iters);

      const int64_t all_wrong = world_sum(*world, wrong);
      wrong_total += wrong;
      const double algbw = static_cast<double>(size_bytes) / seconds / 1e9;
      const double busbw = algbw * 2.0 * (P - 1) / P;
      busbw_sum += busbw;
      ++rows;
      if (world->rank() == 0) {
        std::printf("  %12lld %12lld %8s %12.2f %12.3f %12.3f %8lld\n",
                    static_cast<long long>(size_bytes), static_cast<long long>(count),
                    dtype.c_str(), seconds * 1e6, algbw, busbw, static_cast<long long>(all_wrong));
        const nlohmann::ordered_json row = {
            {"bench", "nccl"},    {"backend", settings.backend}, {"op", settings.op},
            {"ranks", P},         {"bytes", size_bytes},         {"count", count},
            {"dtype", dtype},     {"time_us", seconds * 1e6},    {"algbw_gbs", algbw},
            {"busbw_gbs", busbw}, {"wrong", all_wrong},          {"shared_gpu", shared_gpu}};
        std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
      }
      if (bytes > settings.max_bytes / settings.step_factor) break;  // no overflow past the end
    }
    const int64_t all_wrong = world_sum(*world, wrong_total);
    if (world->rank() == 0) {
      std::printf("# Out of bounds values : %lld %s\n", static_cast<long long>(all_wrong),
                  all_wrong == 0 ? "OK" : "FAILED");
      std::printf("# Avg bus bandwidth    : %.3f GB/s\n", rows > 0 ? busbw_sum / rows : 0.0);
      std::fflush(stdout);
    }
    comm.reset();  // the NCCL communicator closes before MPI does
    return all_wrong == 0 ? 0 : 1;
  });
}
