#include "syncbn/distributed/communicator.h"

#include <algorithm>
#include <cstring>

#include "syncbn/error.h"

namespace syncbn::dist {

std::size_t element_size(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return 4;
    case DataType::kFloat64:
      return 8;
    case DataType::kInt32:
      return 4;
    case DataType::kInt64:
      return 8;
    case DataType::kUint8:
      return 1;
  }
  SYNCBN_FAIL("unknown DataType ", static_cast<int>(type));
}

const char* data_type_name(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return "float32";
    case DataType::kFloat64:
      return "float64";
    case DataType::kInt32:
      return "int32";
    case DataType::kInt64:
      return "int64";
    case DataType::kUint8:
      return "uint8";
  }
  return "unknown";
}

Request::~Request() = default;
Communicator::~Communicator() = default;

namespace {

void check_buffer(const char* op, const void* data, int64_t count) {
  SYNCBN_CHECK(count >= 0, op, ": negative count ", count);
  SYNCBN_CHECK(count == 0 || data != nullptr, op, ": null buffer for ", count, " elements");
}

int64_t bytes_of(int64_t count, DataType type) {
  return count * static_cast<int64_t>(element_size(type));
}

}  // namespace

void Communicator::allreduce_sum(void* data, int64_t count, DataType type, Device device) {
  check_buffer("allreduce_sum", data, count);
  stats_.allreduce_calls += 1;
  stats_.allreduce_bytes += bytes_of(count, type);
  do_allreduce_sum(data, count, type, device);
}

std::unique_ptr<Request> Communicator::iallreduce_sum(void* data, int64_t count, DataType type,
                                                      Device device) {
  check_buffer("iallreduce_sum", data, count);
  stats_.allreduce_calls += 1;
  stats_.allreduce_bytes += bytes_of(count, type);
  return do_iallreduce_sum(data, count, type, device);
}

void Communicator::broadcast(void* data, int64_t count, DataType type, int root, Device device) {
  check_buffer("broadcast", data, count);
  SYNCBN_CHECK(root >= 0 && root < size(), "broadcast: root ", root,
               " is not a rank of a communicator of size ", size());
  stats_.broadcast_calls += 1;
  stats_.broadcast_bytes += bytes_of(count, type);
  do_broadcast(data, count, type, root, device);
}

void Communicator::allgather(const void* send, void* recv, int64_t count_per_rank, DataType type,
                             Device device) {
  check_buffer("allgather (send)", send, count_per_rank);
  check_buffer("allgather (recv)", recv, count_per_rank);
  stats_.allgather_calls += 1;
  stats_.allgather_bytes += bytes_of(count_per_rank, type) * size();
  do_allgather(send, recv, count_per_rank, type, device);
}

void Communicator::barrier() { do_barrier(); }

std::shared_ptr<Communicator> Communicator::split(int color, int key) {
  return do_split(color, key);
}

void Communicator::allreduce_sum(Tensor& tensor) {
  allreduce_sum(tensor.data(), tensor.numel(), DataType::kFloat32, tensor.device());
}

std::unique_ptr<Request> Communicator::iallreduce_sum(Tensor& tensor) {
  return iallreduce_sum(tensor.data(), tensor.numel(), DataType::kFloat32, tensor.device());
}

void Communicator::broadcast(Tensor& tensor, int root) {
  broadcast(tensor.data(), tensor.numel(), DataType::kFloat32, root, tensor.device());
}

std::vector<std::string> Communicator::allgather_strings(const std::string& text) {
  // Two fixed-size allgathers: the lengths, then every string padded to the longest. Every rank
  // makes both calls whatever its string, so this cannot hang on differing data.
  const int64_t length = static_cast<int64_t>(text.size());
  std::vector<int64_t> lengths(static_cast<std::size_t>(size()));
  allgather(&length, lengths.data(), 1, DataType::kInt64);
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());

  std::vector<char> padded(static_cast<std::size_t>(longest), '\0');
  std::memcpy(padded.data(), text.data(), text.size());
  std::vector<char> gathered(static_cast<std::size_t>(longest * size()));
  allgather(padded.data(), gathered.data(), longest, DataType::kUint8);

  std::vector<std::string> texts;
  texts.reserve(lengths.size());
  for (std::size_t r = 0; r < lengths.size(); ++r) {
    texts.emplace_back(gathered.data() + r * longest, static_cast<std::size_t>(lengths[r]));
  }
  return texts;
}

}  // namespace syncbn::dist
