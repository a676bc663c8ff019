// syncbn-bench-batch-norm: the SyncBatchNorm kernels on one GPU, without communication (the
// allreduce of 2C+1 doubles forward and 2C backward per layer is negligible next to them):
//   forward  = batch_norm_stats + batch_norm_finalize + batch_norm_elemt
//   backward = batch_norm_backward_reduce + batch_norm_backward_elemt
// For each shape and layout: the median time of forward and backward over --iters iterations
// (CUDA events, after --warmup), the bandwidth on the minimal traffic
//   forward  3 passes of x's size (read x for the statistics; read x, write y)
//   backward 5 passes (read dy, x for the sums; read dy, x, write dx)
// and that bandwidth as a percentage of a device-to-device cudaMemcpy of the same size measured
// in the same run (2 passes: read and write). A table like nccl-tests' and one JSON line per row
// (fields shared with tests/bench/torch_batch_norm_bench.py, so a join gives the ratios).
// Correctness is checked against the CPU kernels on small shapes in the same run; exit 1 on a
// mismatch.
//   syncbn-bench-batch-norm [--shapes 64x256x56x56,...] [--layouts nchw,nhwc] [--iters 20]
//                           [--warmup 5] [--device 0]
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "syncbn/error.h"

#if defined(SYNCBN_WITH_CUDA)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "cpu/batch_norm.h"
#include "cpu/norm_shape.h"
#include "cuda/batch_norm.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "syncbn/device.h"
#include "syncbn/random.h"
#include "syncbn/tensor.h"
#endif

namespace po = boost::program_options;

#if defined(SYNCBN_WITH_CUDA)

using namespace syncbn;

namespace {

constexpr double kEps = 1e-5;
constexpr double kMomentum = 0.1;

struct Shape4 {
  int64_t n, c, h, w;
  int64_t numel() const { return n * c * h * w; }
  int64_t spatial() const { return h * w; }
  std::string str() const {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
           std::to_string(w);
  }
};

// The kernels' view of x: (N, C, H*W), or (N, H*W, C) when channels_last.
cpu::BatchNormShape kernel_shape(const Shape4& s, bool channels_last) {
  return {s.n, s.c, s.spatial(), channels_last};
}

std::vector<Shape4> parse_shapes(const std::string& text) {
  std::vector<Shape4> shapes;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    Shape4 s{};
    char x1 = 0, x2 = 0, x3 = 0;
    std::stringstream in(item);
    in >> s.n >> x1 >> s.c >> x2 >> s.h >> x3 >> s.w;
    SYNCBN_CHECK(
        in && x1 == 'x' && x2 == 'x' && x3 == 'x' && s.n > 0 && s.c > 0 && s.h > 0 && s.w > 0,
        "--shapes: expected NxCxHxW items separated by commas, got '", item, "'");
    shapes.push_back(s);
  }
  return shapes;
}

std::vector<bool> parse_layouts(const std::string& text) {
  std::vector<bool> layouts;  // channels_last flags
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    SYNCBN_CHECK(item == "nchw" || item == "nhwc", "--layouts: expected nchw and/or nhwc, got '",
                 item, "'");
    layouts.push_back(item == "nhwc");
  }
  return layouts;
}

// A device buffer of doubles (the packed statistics).
class DeviceDoubles {
 public:
  DeviceDoubles(Device device, std::size_t size)
      : storage_(device, std::max<std::size_t>(size, 1) * sizeof(double)) {}
  double* data() const { return static_cast<double*>(storage_.ptr); }

 private:
  Storage storage_;
};

// The tensors of one layer on the device, and the five kernels over them.
struct Layer {
  Layer(const Shape4& s, bool channels_last, Device device)
      : shape(kernel_shape(s, channels_last)),
        x(Tensor::empty({s.numel()}, device)),
        dy(Tensor::empty({s.numel()}, device)),
        y(Tensor::empty({s.numel()}, device)),
        dx(Tensor::empty({s.numel()}, device)),
        weight(Tensor::full({s.c}, 1.0f, device)),
        bias(Tensor::zeros({s.c}, device)),
        running_mean(Tensor::zeros({s.c}, device)),
        running_var(Tensor::full({s.c}, 1.0f, device)),
        mean(Tensor::empty({s.c}, device)),
        invstd(Tensor::empty({s.c}, device)),
        grad_weight(Tensor::zeros({s.c}, device)),
        grad_bias(Tensor::zeros({s.c}, device)),
        packed(device, 2 * s.c + 1) {}

  void forward() {
    cuda::batch_norm_stats(x.data(), running_mean.data(), shape, packed.data());
    cuda::batch_norm_finalize(packed.data(), running_mean.data(), shape.channels, kEps, mean.data(),
                              invstd.data(), running_mean.data(), running_var.data(), nullptr,
                              kMomentum, false);
    cuda::batch_norm_elemt(x.data(), mean.data(), invstd.data(), weight.data(), bias.data(), shape,
                           y.data());
  }

  // As BatchNorm does: the backward sums go over s1 and s2 of the packed buffer, whose last
  // slot keeps the forward's count n for backward_elemt.
  void backward() {
    cuda::batch_norm_backward_reduce(dy.data(), x.data(), mean.data(), invstd.data(), shape,
                                     packed.data(), grad_weight.data(), grad_bias.data());
    cuda::batch_norm_backward_elemt(dy.data(), x.data(), mean.data(), invstd.data(), weight.data(),
                                    packed.data(), shape, dx.data());
  }

  cpu::BatchNormShape shape;
  Tensor x, dy, y, dx, weight, bias, running_mean, running_var, mean, invstd, grad_weight,
      grad_bias;
  DeviceDoubles packed;
};

class Event {
 public:
  Event() { SYNCBN_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record() { SYNCBN_CUDA_CHECK(cudaEventRecord(event_, cuda::stream())); }
  float ms_since(const Event& start) const {
    SYNCBN_CUDA_CHECK(cudaEventSynchronize(event_));
    float ms = 0.0f;
    SYNCBN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Uniform values in [-1.7, 1.7) (std about 1) from a fast generator: the bench fills up to a
// few hundred million floats.
std::vector<float> host_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& value : v) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    value = static_cast<float>(static_cast<double>(state >> 40) * (3.4 / 16777216.0) - 1.7);
  }
  return v;
}

// Forward and backward on the GPU and the CPU for one small shape; returns the largest error
// relative to the largest magnitude of each output.
double check_against_cpu(const Shape4& s, bool channels_last, Device device) {
  Layer layer(s, channels_last, device);
  Generator gen(s.numel() + (channels_last ? 1 : 0));
  std::vector<float> x(s.numel()), dy(s.numel()), weight(s.c), bias(s.c);
  for (auto& v : x) v = gen.normal(2.0f, 3.0f);
  for (auto& v : dy) v = gen.normal(0.0f, 1.0f);
  for (auto& v : weight) v = gen.normal(1.0f, 0.3f);
  for (auto& v : bias) v = gen.normal(0.0f, 0.3f);
  layer.x.copy_from(Tensor::from_vector({s.numel()}, x));
  layer.dy.copy_from(Tensor::from_vector({s.numel()}, dy));
  layer.weight.copy_from(Tensor::from_vector({s.c}, weight));
  layer.bias.copy_from(Tensor::from_vector({s.c}, bias));
  layer.forward();
  layer.backward();

  const cpu::BatchNormShape shape = kernel_shape(s, channels_last);
  std::vector<double> packed(2 * s.c + 1);
  std::vector<float> running_mean(s.c, 0.0f), running_var(s.c, 1.0f), mean(s.c), invstd(s.c);
  std::vector<float> y(s.numel()), dx(s.numel()), grad_weight(s.c, 0.0f), grad_bias(s.c, 0.0f);
  cpu::batch_norm_stats(x.data(), running_mean.data(), shape, packed.data());
  cpu::batch_norm_finalize(packed.data(), running_mean.data(), s.c, kEps, mean.data(),
                           invstd.data(), running_mean.data(), running_var.data(), nullptr,
                           kMomentum, false);
  cpu::batch_norm_elemt(x.data(), mean.data(), invstd.data(), weight.data(), bias.data(), shape,
                        y.data());
  cpu::batch_norm_backward_reduce(dy.data(), x.data(), mean.data(), invstd.data(), shape,
                                  packed.data(), grad_weight.data(), grad_bias.data());
  cpu::batch_norm_backward_elemt(dy.data(), x.data(), mean.data(), invstd.data(), weight.data(),
                                 packed.data(), shape, dx.data());

  double worst = 0.0;
  auto compare = [&](const Tensor& actual, const std::vector<float>& expected) {
    const std::vector<float> a = actual.to_vector();
    double scale = 1e-30, error = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(expected[i])));
      error = std::max(error, std::fabs(static_cast<double>(a[i]) - expected[i]));
    }
    worst = std::max(worst, error / scale);
  };
  compare(layer.y, y);
  compare(layer.dx, dx);
  compare(layer.mean, mean);
  compare(layer.invstd, invstd);
  compare(layer.running_mean, running_mean);
  compare(layer.running_var, running_var);
  compare(layer.grad_weight, grad_weight);
  compare(layer.grad_bias, grad_bias);
  return worst;
}

struct Row {
  Shape4 shape;
  bool channels_last;
  double fwd_us, bwd_us, memcpy_gbps;
};

double gbps(double bytes, double us) { return bytes / (us * 1e-6) / 1e9; }

Row bench(const Shape4& s, bool channels_last, Device device, const std::vector<float>& host,
          int warmup, int iters) {
  Layer layer(s, channels_last, device);
  const std::size_t bytes = static_cast<std::size_t>(s.numel()) * sizeof(float);
  device_copy(layer.x.data(), device, host.data(), Device::cpu(), bytes);
  device_copy(layer.dy.data(), device, host.data() + 1, Device::cpu(), bytes);  // other values

  Event start, middle, end;
  std::vector<double> fwd, bwd, copy;
  for (int i = 0; i < warmup + iters; ++i) {
    start.record();
    layer.forward();
    middle.record();
    layer.backward();
    end.record();
    const double f = 1e3 * middle.ms_since(start), b = 1e3 * end.ms_since(middle);
    if (i >= warmup) {
      fwd.push_back(f);
      bwd.push_back(b);
    }
  }
  for (int i = 0; i < warmup + iters; ++i) {
    start.record();
    SYNCBN_CUDA_CHECK(cudaMemcpyAsync(layer.y.data(), layer.x.data(), bytes,
                                      cudaMemcpyDeviceToDevice, cuda::stream()));
    end.record();
    const double t = 1e3 * end.ms_since(start);
    if (i >= warmup) copy.push_back(t);
  }
  return {s, channels_last, median(fwd), median(bwd), gbps(2.0 * bytes, median(copy))};
}

// v rounded to `decimals` places, as the table prints it.
double rounded(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

int run(const po::variables_map& args) {
  const int device_index = args["device"].as<int>();
  SYNCBN_CHECK(cuda_device_count() > device_index, "no CUDA device ", device_index, " (",
               cuda_device_count(), " visible)");
  cuda::set_device(device_index);
  const Device device = Device::cuda(device_index);
  cudaDeviceProp properties{};
  SYNCBN_CUDA_CHECK(cudaGetDeviceProperties(&properties, device_index));
  const std::string device_name = properties.name;

  const std::vector<Shape4> shapes = parse_shapes(args["shapes"].as<std::string>());
  const std::vector<bool> layouts = parse_layouts(args["layouts"].as<std::string>());
  const int warmup = args["warmup"].as<int>();
  const int iters = args["iters"].as<int>();
  SYNCBN_CHECK(warmup >= 0 && iters > 0, "--warmup must be >= 0 and --iters > 0");

  // Correctness first, on small shapes: odd sizes, S % 4 != 0 and == 0, S = 1.
  bool ok = true;
  for (const Shape4& s : {Shape4{5, 37, 9, 11}, Shape4{4, 64, 8, 8}, Shape4{33, 6, 1, 1}}) {
    for (bool channels_last : {false, true}) {
      const double error = check_against_cpu(s, channels_last, device);
      const bool pass = error < 1e-4;
      ok = ok && pass;
      std::printf("# check %-12s %-4s max relative error %.2e %s\n", s.str().c_str(),
                  channels_last ? "nhwc" : "nchw", error, pass ? "ok" : "FAILED");
    }
  }

  int64_t largest = 0;
  for (const Shape4& s : shapes) largest = std::max(largest, s.numel());
  const std::vector<float> host = host_values(largest + 1, 12345);

  std::printf("# device %s, %d warm-up and %d timed iterations, median\n", device_name.c_str(),
              warmup, iters);
  std::printf(
      "# forward = stats + finalize + elemt (3 passes), backward = backward_reduce + "
      "backward_elemt (5 passes); %% of memcpy = GB/s over device-to-device cudaMemcpy\n");
  std::printf("#%21s %6s %10s %9s %7s %10s %9s %7s %9s %7s %9s\n", "shape", "layout", "fwd(us)",
              "fwd GB/s", "fwd %", "bwd(us)", "bwd GB/s", "bwd %", "all GB/s", "all %", "memcpy");
  std::vector<nlohmann::ordered_json> json;
  for (const Shape4& s : shapes) {
    for (bool channels_last : layouts) {
      const Row r = bench(s, channels_last, device, host, warmup, iters);
      const double x_bytes = static_cast<double>(s.numel()) * sizeof(float);
      const double fwd_gbps = gbps(3 * x_bytes, r.fwd_us);
      const double bwd_gbps = gbps(5 * x_bytes, r.bwd_us);
      const double all_gbps = gbps(8 * x_bytes, r.fwd_us + r.bwd_us);
      const char* layout = channels_last ? "nhwc" : "nchw";
      std::printf(" %21s %6s %10.1f %9.1f %6.1f%% %10.1f %9.1f %6.1f%% %9.1f %6.1f%% %9.1f\n",
                  s.str().c_str(), layout, r.fwd_us, fwd_gbps, 100 * fwd_gbps / r.memcpy_gbps,
                  r.bwd_us, bwd_gbps, 100 * bwd_gbps / r.memcpy_gbps, all_gbps,
                  100 * all_gbps / r.memcpy_gbps, r.memcpy_gbps);
      json.push_back({{"bench", "batch_norm"},
                      {"impl", "syncbn"},
                      {"device", device_name},
                      {"n", s.n},
                      {"c", s.c},
                      {"h", s.h},
                      {"w", s.w},
                      {"layout", layout},
                      {"fwd_us", rounded(r.fwd_us, 2)},
                      {"bwd_us", rounded(r.bwd_us, 2)},
                      {"fwd_gbps", rounded(fwd_gbps, 1)},
                      {"bwd_gbps", rounded(bwd_gbps, 1)},
                      {"all_gbps", rounded(all_gbps, 1)},
                      {"memcpy_gbps", rounded(r.memcpy_gbps, 1)},
                      {"fwd_pct_memcpy", rounded(100 * fwd_gbps / r.memcpy_gbps, 1)},
                      {"bwd_pct_memcpy", rounded(100 * bwd_gbps / r.memcpy_gbps, 1)},
                      {"all_pct_memcpy", rounded(100 * all_gbps / r.memcpy_gbps, 1)},
                      {"check", ok ? "ok" : "failed"}});
    }
  }
  for (const nlohmann::ordered_json& row : json) std::printf("%s\n", row.dump().c_str());
  if (!ok) std::fprintf(stderr, "syncbn-bench-batch-norm: GPU results differ from the CPU's\n");
  return ok ? 0 : 1;
}

}  // namespace

#endif  // SYNCBN_WITH_CUDA

int main(int argc, char** argv) {
  po::options_description options("syncbn-bench-batch-norm options");
  options.add_options()("help,h", "this help")(
      "shapes",
      po::value<std::string>()->default_value("64x256x56x56,128x64x112x112,32x256x112x112,"
                                              "256x2048x7x7"),
      "NxCxHxW shapes, comma-separated")(
      "layouts", po::value<std::string>()->default_value("nchw,nhwc"), "nchw and/or nhwc")(
      "iters", po::value<int>()->default_value(20), "timed iterations (median reported)")(
      "warmup", po::value<int>()->default_value(5), "untimed iterations first")(
      "device", po::value<int>()->default_value(0), "CUDA device index");
  try {
    po::variables_map args;
    po::store(po::parse_command_line(argc, argv, options), args);
    po::notify(args);
    if (args.count("help")) {
      std::cout << options << "\n";
      return 0;
    }
#if defined(SYNCBN_WITH_CUDA)
    return run(args);
#else
    std::cerr << "syncbn-bench-batch-norm: this build has no CUDA backend\n";
    return 77;
#endif
  } catch (const std::exception& e) {
    std::cerr << "syncbn-bench-batch-norm: " << e.what() << "\n";
    return 1;
  }
}
