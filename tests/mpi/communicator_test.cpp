// MpiCommunicator under mpirun with P = 1..4 ranks: every collective against a closed-form
// result computed from the rank numbers alone.
#include <gtest/gtest.h>

// Only MPI's C API: the deprecated C++ bindings would need libmpi_cxx at link time.
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "syncbn/distributed/launch_env.h"
#include "syncbn/distributed/mpi_communicator.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/tensor.h"

namespace syncbn::dist {
namespace {

std::shared_ptr<MpiCommunicator> world() { return MpiCommunicator::world(); }

// sum over r in [0, P) of (r + 1) * scale + i
double closed_form_sum(int size, double scale, double i) {
  return scale * size * (size + 1) / 2.0 + size * i;
}

TEST(CommunicatorTest, RuntimeOverRunningMpiGivesTheWorldAndLeavesMpiToItsOwner) {
  Runtime runtime;  // MPI was initialised by the test main
  EXPECT_FALSE(runtime.owns_mpi());
  auto comm = runtime.world();
  ASSERT_NE(comm, nullptr);
  auto reference = world();
  EXPECT_EQ(comm->rank(), reference->rank());
  EXPECT_EQ(comm->size(), reference->size());
  EXPECT_GE(comm->size(), 1);
  EXPECT_LT(comm->rank(), comm->size());
}

TEST(CommunicatorTest, AllreduceSumFloatInPlaceIsTheSumOverRanks) {
  auto comm = world();
  const int n = 1000;
  std::vector<float> data(n);
  for (int i = 0; i < n; ++i) data[i] = (comm->rank() + 1) * 0.5f + i;
  comm->allreduce_sum(data.data(), n, DataType::kFloat32);
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(data[i], static_cast<float>(closed_form_sum(comm->size(), 0.5, i))) << "i = " << i;
  }
}

TEST(CommunicatorTest, AllreduceSumDoubleInPlaceIsTheSumOverRanks) {
  auto comm = world();
  std::vector<double> data(257);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = (comm->rank() + 1) * 0.25 + i;
  comm->allreduce_sum(data.data(), static_cast<int64_t>(data.size()), DataType::kFloat64);
  for (std::size_t i = 0; i < data.size(); ++i) {
    ASSERT_EQ(data[i], closed_form_sum(comm->size(), 0.25, static_cast<double>(i)));
  }
}

TEST(CommunicatorTest, AllreduceSumIntegersInPlaceIsTheSumOverRanks) {
  auto comm = world();
  const int size = comm->size();
  std::vector<int32_t> small(10);
  std::vector<int64_t> large(10);
  std::vector<uint8_t> bytes(10);
  for (int i = 0; i < 10; ++i) {
    small[i] = (comm->rank() + 1) * 3 - i;
    large[i] = (int64_t{comm->rank()} + 1) * (int64_t{1} << 40) + i;
    bytes[i] = static_cast<uint8_t>(comm->rank() + 1 + i);
  }
  comm->allreduce_sum(small.data(), 10, DataType::kInt32);
  comm->allreduce_sum(large.data(), 10, DataType::kInt64);
  comm->allreduce_sum(bytes.data(), 10, DataType::kUint8);
  const int64_t ranks_sum = int64_t{size} * (size + 1) / 2;  // sum of (r + 1)
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(small[i], 3 * ranks_sum - size * i);
    EXPECT_EQ(large[i], ranks_sum * (int64_t{1} << 40) + size * i);
    EXPECT_EQ(bytes[i], ranks_sum + size * i);
  }
}

TEST(CommunicatorTest, AllreduceSplitIntoPiecesBeyondTheMaximumCountIsStillTheSum) {
  auto comm = world();
  comm->set_max_elements_per_call(7);  // 50 elements: pieces of 7, 7, ..., 1
  std::vector<double> data(50);
  for (int i = 0; i < 50; ++i) data[i] = (comm->rank() + 1) * 2.0 + i;
  comm->allreduce_sum(data.data(), 50, DataType::kFloat64);
  auto request = comm->iallreduce_sum(data.data(), 50, DataType::kFloat64);
  request->wait();
  // Two allreduces: the first gives S_i, the second P * S_i.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(data[i], comm->size() * closed_form_sum(comm->size(), 2.0, i)) << "i = " << i;
  }
}

TEST(CommunicatorTest, SeveralIallreducesInFlightAllGiveTheSum) {
  auto comm = world();
  const int kRequests = 5;
  std::vector<std::vector<float>> buffers(kRequests);
  std::vector<std::unique_ptr<Request>> requests;
  for (int k = 0; k < kRequests; ++k) {
    buffers[k].resize(100 * (k + 1));
    for (std::size_t i = 0; i < buffers[k].size(); ++i) buffers[k][i] = (comm->rank() + 1) * k + i;
    requests.push_back(comm->iallreduce_sum(
        buffers[k].data(), static_cast<int64_t>(buffers[k].size()), DataType::kFloat32));
  }
  // Complete out of order: poll the last with test(), wait for the others backwards.
  while (!requests.back()->test()) {
  }
  EXPECT_TRUE(requests.back()->test());  // stays complete
  for (int k = kRequests - 1; k >= 0; --k) requests[k]->wait();
  requests[0]->wait();  // waiting twice is harmless
  for (int k = 0; k < kRequests; ++k) {
    for (std::size_t i = 0; i < buffers[k].size(); ++i) {
      ASSERT_EQ(buffers[k][i], static_cast<float>(closed_form_sum(comm->size(), k, i)))
          << "request " << k << ", i = " << i;
    }
  }
}

TEST(CommunicatorTest, BroadcastFromANonZeroRootReachesEveryRank) {
  auto comm = world();
  for (int root : {comm->size() - 1, comm->size() / 2}) {
    std::vector<int64_t> data(33, -1);
    if (comm->rank() == root) {
      for (int i = 0; i < 33; ++i) data[i] = 1000 * (root + 1) + i;
    }
    comm->broadcast(data.data(), 33, DataType::kInt64, root);
    for (int i = 0; i < 33; ++i) ASSERT_EQ(data[i], 1000 * (root + 1) + i) << "root " << root;
  }
}

TEST(CommunicatorTest, BroadcastToARankOutsideTheCommunicatorIsAnError) {
  auto comm = world();
  float x = 0;
  EXPECT_THROW(comm->broadcast(&x, 1, DataType::kFloat32, comm->size()), Error);
  EXPECT_THROW(comm->broadcast(&x, 1, DataType::kFloat32, -1), Error);
}

TEST(CommunicatorTest, AllgatherPlacesEachRanksBlockAtItsOffset) {
  auto comm = world();
  const int per_rank = 3;
  std::vector<double> send(per_rank);
  for (int i = 0; i < per_rank; ++i) send[i] = comm->rank() * 10.0 + i;
  std::vector<double> recv(per_rank * comm->size(), -1.0);
  comm->allgather(send.data(), recv.data(), per_rank, DataType::kFloat64);
  for (int r = 0; r < comm->size(); ++r) {
    for (int i = 0; i < per_rank; ++i) EXPECT_EQ(recv[r * per_rank + i], r * 10.0 + i);
  }
}

TEST(CommunicatorTest, AllgatherSplitIntoPiecesKeepsEachRanksBlockContiguous) {
  auto comm = world();
  comm->set_max_elements_per_call(4);  // 10 per rank: pieces of 4, 4, 2
  const int per_rank = 10;
  std::vector<int32_t> send(per_rank);
  for (int i = 0; i < per_rank; ++i) send[i] = comm->rank() * 100 + i;
  std::vector<int32_t> recv(per_rank * comm->size(), -1);
  comm->allgather(send.data(), recv.data(), per_rank, DataType::kInt32);
  for (int r = 0; r < comm->size(); ++r) {
    for (int i = 0; i < per_rank; ++i) ASSERT_EQ(recv[r * per_rank + i], r * 100 + i);
  }
}

TEST(CommunicatorTest, AllgatherStringsOfDifferentLengthsGivesEveryRanksString) {
  auto comm = world();
  // Rank r sends 3r characters (rank 0 an empty string), including a NUL byte.
  auto text_of = [](int r) {
    std::string text(3 * r, static_cast<char>('a' + r));
    if (r > 0) text[1] = '\0';
    return text;
  };
  const std::vector<std::string> texts = comm->allgather_strings(text_of(comm->rank()));
  ASSERT_EQ(static_cast<int>(texts.size()), comm->size());
  for (int r = 0; r < comm->size(); ++r) EXPECT_EQ(texts[r], text_of(r)) << "rank " << r;
}

TEST(CommunicatorTest, SplitIntoConsecutivePairsReducesWithinEachPair) {
  auto comm = world();
  const int color = comm->rank() / 2;
  auto pair = comm->split(color, comm->rank());
  ASSERT_NE(pair, nullptr);
  // Ranks 2c and 2c + 1; the last group has one rank when P is odd.
  const int first = 2 * color;
  const int members = std::min(2, comm->size() - first);
  EXPECT_EQ(pair->size(), members);
  EXPECT_EQ(pair->rank(), comm->rank() - first);
  EXPECT_EQ(pair->local_size(), members);  // one host
  int64_t value = comm->rank() + 1;
  pair->allreduce_sum(&value, 1, DataType::kInt64);
  int64_t expected = 0;
  for (int r = first; r < first + members; ++r) expected += r + 1;
  EXPECT_EQ(value, expected);
  // A split of a split works too, and the world is untouched.
  auto single = pair->split(pair->rank(), 0);
  EXPECT_EQ(single->size(), 1);
  int64_t one = 1;
  comm->allreduce_sum(&one, 1, DataType::kInt64);
  EXPECT_EQ(one, comm->size());
}

TEST(CommunicatorTest, SplitKeyOrdersTheRanksOfTheGroup) {
  auto comm = world();
  auto reversed = comm->split(0, -comm->rank());
  ASSERT_NE(reversed, nullptr);
  EXPECT_EQ(reversed->size(), comm->size());
  EXPECT_EQ(reversed->rank(), comm->size() - 1 - comm->rank());
}

TEST(CommunicatorTest, SplitWithNegativeColorJoinsNoGroup) {
  auto comm = world();
  // Rank 0 stays out; the others form one group.
  auto group = comm->split(comm->rank() == 0 ? -1 : 1, comm->rank());
  if (comm->rank() == 0) {
    EXPECT_EQ(group, nullptr);
  } else {
    ASSERT_NE(group, nullptr);
    EXPECT_EQ(group->size(), comm->size() - 1);
    EXPECT_EQ(group->rank(), comm->rank() - 1);
  }
}

TEST(CommunicatorTest, StatsCountCallsAndBytesOfEachCollective) {
  auto comm = world();
  std::vector<float> floats(10, 1.0f);
  float x = 0;
  comm->allreduce_sum(&x, 1, DataType::kFloat32);  // before the reset: not counted
  comm->reset_stats();
  comm->allreduce_sum(floats.data(), 10, DataType::kFloat32);
  comm->allreduce_sum(floats.data(), 10, DataType::kFloat32);
  std::vector<double> doubles(3, 1.0);
  comm->iallreduce_sum(doubles.data(), 3, DataType::kFloat64)->wait();
  std::vector<int32_t> ints(5, 0);
  comm->broadcast(ints.data(), 5, DataType::kInt32, 0);
  std::vector<float> gathered(4 * comm->size());
  comm->allgather(floats.data(), gathered.data(), 4, DataType::kFloat32);
  comm->barrier();

  const CommStats& stats = comm->stats();
  EXPECT_EQ(stats.allreduce_calls, 3);
  EXPECT_EQ(stats.allreduce_bytes, 10 * 4 + 10 * 4 + 3 * 8);
  EXPECT_EQ(stats.broadcast_calls, 1);
  EXPECT_EQ(stats.broadcast_bytes, 5 * 4);
  EXPECT_EQ(stats.allgather_calls, 1);
  EXPECT_EQ(stats.allgather_bytes, 4 * 4 * comm->size());
  comm->reset_stats();
  EXPECT_EQ(comm->stats().allreduce_calls, 0);
  EXPECT_EQ(comm->stats().allgather_bytes, 0);
}

TEST(CommunicatorTest, LocalRankAndSizeDescribeTheOneHost) {
  auto comm = world();
  // Every rank of these tests runs on this host.
  EXPECT_EQ(comm->local_size(), comm->size());
  EXPECT_EQ(comm->local_rank(), comm->rank());
  const LaunchEnv placement = read_launch_env();
  if (placement.source == "OMPI") {
    EXPECT_EQ(placement.rank, comm->rank());
    EXPECT_EQ(placement.world_size, comm->size());
    EXPECT_EQ(placement.local_rank, comm->local_rank());
    EXPECT_EQ(placement.local_size, comm->local_size());
  }
}

TEST(CommunicatorTest, TensorConveniencesReduceAndBroadcastFloat32Tensors) {
  auto comm = world();
  Tensor t = Tensor::full({2, 3}, static_cast<float>(comm->rank() + 1));
  comm->allreduce_sum(t);
  const float sum = comm->size() * (comm->size() + 1) / 2.0f;
  for (float v : t.to_vector()) EXPECT_EQ(v, sum);

  Tensor u = Tensor::full({4}, static_cast<float>(comm->rank()));
  auto request = comm->iallreduce_sum(u);
  request->wait();
  for (float v : u.to_vector()) EXPECT_EQ(v, sum - comm->size());

  const int root = comm->size() - 1;
  Tensor b = Tensor::full({5}, static_cast<float>(comm->rank() * 7));
  comm->broadcast(b, root);
  for (float v : b.to_vector()) EXPECT_EQ(v, root * 7.0f);
}

TEST(CommunicatorTest, FailedMpiCallThrowsErrorNamingTheCallAndMpisReason) {
  auto comm = world();  // sets MPI_ERRORS_RETURN on the world, so errors come back as codes
  int rank = -1;
  std::string message;
  try {
    SYNCBN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_NULL, &rank));
  } catch (const Error& error) {
    message = error.what();
  }
  EXPECT_NE(message.find("MPI_Comm_rank failed: "), std::string::npos) << message;
  EXPECT_NE(message.find("communicator"), std::string::npos) << message;  // MPI's reason
  EXPECT_NO_THROW(SYNCBN_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank)));
  EXPECT_EQ(rank, comm->rank());
}

TEST(CommunicatorTest, ZeroElementCollectivesAreAllowed) {
  auto comm = world();
  comm->allreduce_sum(nullptr, 0, DataType::kFloat32);
  comm->iallreduce_sum(nullptr, 0, DataType::kFloat64)->wait();
  comm->broadcast(nullptr, 0, DataType::kInt32, 0);
  comm->allgather(nullptr, nullptr, 0, DataType::kUint8);
  EXPECT_THROW(comm->allreduce_sum(nullptr, 3, DataType::kFloat32), Error);
  EXPECT_THROW(comm->allreduce_sum(nullptr, -1, DataType::kFloat32), Error);
}

}  // namespace
}  // namespace syncbn::dist
