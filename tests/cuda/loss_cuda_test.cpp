// The CUDA softmax cross-entropy kernels against the CPU kernels of the same names: odd class
// counts (one row per warp, rows longer and shorter than a warp), large logits, tied maxima (the
// first argmax decides the hit), NaN rows, and the empty batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cpu/loss.h"
#include "cuda/loss.h"
#include "support/close.h"
#include "support/cuda.h"
#include "support/random.h"
#include "syncbn/tensor.h"

namespace syncbn {
namespace {

using testing::expect_close_rel;
using testing::on_device;
using testing::random_labels;
using testing::random_values;

// int32 labels travel in a float tensor (as the ops store them), bit for bit.
Tensor int32_on_device(const std::vector<int32_t>& values) {
  std::vector<float> bits(values.size());
  std::memcpy(bits.data(), values.data(), values.size() * sizeof(int32_t));
  return on_device(bits);
}
const int32_t* int32_data(const Tensor& t) { return reinterpret_cast<const int32_t*>(t.data()); }

struct Forward {
  std::vector<float> probabilities, losses, hits;
};

Forward cpu_forward(const std::vector<float>& logits, const std::vector<int32_t>& labels, int64_t n,
                    int64_t k) {
  Forward f{std::vector<float>(logits.size()), std::vector<float>(n), std::vector<float>(n)};
  cpu::softmax_cross_entropy_forward(logits.data(), labels.data(), n, k, f.probabilities.data(),
                                     f.losses.data(), f.hits.data());
  return f;
}

Forward cuda_forward(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                     int64_t n, int64_t k) {
  Tensor logits_dev = on_device(logits), labels_dev = int32_on_device(labels);
  Tensor probabilities = Tensor::empty({n * k}, Device::cuda(0));
  Tensor per_sample = Tensor::empty({2 * n}, Device::cuda(0));
  cuda::softmax_cross_entropy_forward(logits_dev.data(), int32_data(labels_dev), n, k,
                                      probabilities.data(), per_sample.data(),
                                      per_sample.data() + n);
  const std::vector<float> both = per_sample.to_vector();
  return {probabilities.to_vector(), std::vector<float>(both.begin(), both.begin() + n),
          std::vector<float>(both.begin() + n, both.end())};
}

TEST(LossCudaTest, ForwardMatchesCpuForOddClassCountsAndLargeLogits) {
  SYNCBN_REQUIRE_CUDA();
  struct Case {
    int64_t n, k;
    float std, mean;
  };
  uint64_t seed = 1;
  for (const Case& c :
       {Case{0, 10, 1, 0}, Case{1, 1, 1, 0}, Case{7, 2, 1, 0}, Case{33, 10, 3, 0},
        Case{9, 37, 1, 0}, Case{5, 1000, 2, 0}, Case{17, 31, 8, 1000}, Case{300, 3, 1, -50}}) {
    const auto logits = random_values(c.n * c.k, seed += 2, c.std, c.mean);
    const auto labels = random_labels(c.n, c.k, seed + 1);
    const Forward expected = cpu_forward(logits, labels, c.n, c.k);
    const Forward actual = cuda_forward(logits, labels, c.n, c.k);
    const std::string what = "n=" + std::to_string(c.n) + " k=" + std::to_string(c.k);
    expect_close_rel(actual.probabilities, expected.probabilities, 1e-5, what + " probabilities");
    expect_close_rel(actual.losses, expected.losses, 1e-5, what + " losses");
    EXPECT_EQ(actual.hits, expected.hits) << what;
  }
}

TEST(LossCudaTest, HitsUseTheFirstArgmaxAndNaNRowsMatchCpu) {
  SYNCBN_REQUIRE_CUDA();
  const int64_t k = 45;  // longer than a warp: ties across lanes and across passes
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> labels;
  auto row_of = [&](uint64_t seed) { return random_values(k, seed); };
  // Tied maxima at 3 and 40: the first (3) is the argmax; label 40 misses, label 3 hits.
  for (int32_t label : {3, 40}) {
    auto row = row_of(label);
    row[3] = row[40] = 10.0f;
    rows.push_back(row);
    labels.push_back(label);
  }
  // Ties at 33 and 1 (different lanes): 1 wins.
  {
    auto row = row_of(5);
    row[33] = row[1] = 9.0f;
    rows.push_back(row);
    labels.push_back(1);
  }
  // All equal: column 0 wins.
  rows.push_back(std::vector<float>(k, 0.5f));
  labels.push_back(0);
  // A NaN in the middle is skipped by the CPU's scan: the hit is decided by the other values.
  {
    auto row = row_of(6);
    row[7] = nan;
    row[20] = 12.0f;
    rows.push_back(row);
    labels.push_back(20);
  }
  // A NaN in column 0: the CPU's argmax stays at 0.
  {
    auto row = row_of(8);
    row[0] = nan;
    rows.push_back(row);
    labels.push_back(0);
  }
  // -inf everywhere but one column.
  {
    std::vector<float> row(k, -std::numeric_limits<float>::infinity());
    row[44] = 1.0f;
    rows.push_back(row);
    labels.push_back(44);
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> logits;
  for (const auto& row : rows) logits.insert(logits.end(), row.begin(), row.end());
  const Forward expected = cpu_forward(logits, labels, n, k);
  const Forward actual = cuda_forward(logits, labels, n, k);
  EXPECT_EQ(actual.hits, expected.hits);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const float e = expected.probabilities[i * k + j], a = actual.probabilities[i * k + j];
      if (std::isnan(e)) {
        EXPECT_TRUE(std::isnan(a)) << "row " << i << " column " << j;
      } else {
        EXPECT_NEAR(a, e, 1e-5 * std::max(std::fabs(e), 1e-3f) + 1e-7)
            << "row " << i << " column " << j;
      }
    }
    const float e = expected.losses[i], a = actual.losses[i];
    if (std::isnan(e)) {
      EXPECT_TRUE(std::isnan(a)) << "row " << i;
    } else {
      EXPECT_NEAR(a, e, 1e-5 * std::max(std::fabs(e), 1e-3f) + 1e-7) << "row " << i;
    }
  }
}

TEST(LossCudaTest, BackwardMatchesCpu) {
  SYNCBN_REQUIRE_CUDA();
  struct Case {
    int64_t n, k;
  };
  uint64_t seed = 300;
  for (const Case& c : {Case{0, 10}, Case{1, 1}, Case{7, 3}, Case{64, 10}, Case{13, 1001}}) {
    const auto logits = random_values(c.n * c.k, seed += 2, 2.0f);
    const auto labels = random_labels(c.n, c.k, seed + 1);
    const Forward forward = cpu_forward(logits, labels, c.n, c.k);
    const float scale = c.n == 0 ? 0.0f : 1.0f / static_cast<float>(c.n);
    std::vector<float> expected(logits.size());
    cpu::softmax_cross_entropy_backward(forward.probabilities.data(), labels.data(), c.n, c.k,
                                        scale, expected.data());

    Tensor probabilities = on_device(forward.probabilities), labels_dev = int32_on_device(labels);
    Tensor dlogits = Tensor::empty({c.n * c.k}, Device::cuda(0));
    cuda::softmax_cross_entropy_backward(probabilities.data(), int32_data(labels_dev), c.n, c.k,
                                         scale, dlogits.data());
    expect_close_rel(dlogits.to_vector(), expected, 1e-5,
                     "n=" + std::to_string(c.n) + " k=" + std::to_string(c.k));
  }
}

}  // namespace
}  // namespace syncbn
