// 2-D convolution on the GPU through cuDNN's convolution API (cudnnConvolutionForward /
// BackwardData / BackwardFilter), with the contract of cpu/conv.h.
//
// For each shape (and device) a plan is made once and cached: the tensor, filter and convolution
// descriptors and one algorithm per direction. The workspace the ops pass in is the layer's own
// device buffer of conv2d_workspace_size() floats: the largest workspace of the three algorithms.
//
// Algorithm policy (accuracy first): the descriptors ask for CUDNN_FMA_MATH, so no TF32 tensor
// cores, and only the GEMM-based algorithms are taken (implicit / precomputed-implicit / explicit
// GEMM and direct forward; ALGO_0, ALGO_1 backward data; ALGO_0, ALGO_1, ALGO_3 backward filter).
// Winograd and FFT are left out: their fp32 error (about 1e-5 to 1e-4 relative) would break the
// 1e-5 agreement with the CPU path. Among those, in cuDNN's heuristic order (cudnnGet..._v7)
// followed by a fixed fallback list, the first that cuDNN can run is taken, trying in turn:
//   1. deterministic, workspace at most kMaxWorkspaceBytes;
//   2. deterministic, any workspace (the same bits on every run matter more than memory, and the
//      workspace is sized from the algorithm chosen here, so a larger one is simply allocated);
//   3. non-deterministic (atomics), first within kMaxWorkspaceBytes, then any workspace. This only
//      happens when no deterministic algorithm can run the shape at all, and is said once per
//      process on stderr, naming the direction and the shape.
#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/conv.h"
#include "cuda/elementwise.h"

namespace syncbn::cuda {

namespace {

// Each layer keeps its own workspace, so preferring algorithms within the cap bounds the memory
// of a deep network; it gives way to determinism (see the policy above).
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{64} << 20;

// RAII holders for the descriptors.
struct TensorDescriptor {
  cudnnTensorDescriptor_t handle = nullptr;
  TensorDescriptor() { SYNCBN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&handle)); }
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(handle); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
};
struct FilterDescriptor {
  cudnnFilterDescriptor_t handle = nullptr;
  FilterDescriptor() { SYNCBN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&handle)); }
  ~FilterDescriptor() { cudnnDestroyFilterDescriptor(handle); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
};
struct ConvolutionDescriptor {
  cudnnConvolutionDescriptor_t handle = nullptr;
  ConvolutionDescriptor() { SYNCBN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&handle)); }
  ~ConvolutionDescriptor() { cudnnDestroyConvolutionDescriptor(handle); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
};

struct ConvPlan {
  TensorDescriptor x, y;    // (N, C, H, W) and (N, O, Ho, Wo); dx and dy share them
  FilterDescriptor weight;  // (O, C, K, K); dweight shares it
  ConvolutionDescriptor convolution;
  cudnnConvolutionFwdAlgo_t forward_algo{};
  cudnnConvolutionBwdDataAlgo_t backward_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t backward_filter_algo{};
  std::size_t forward_bytes = 0, backward_data_bytes = 0, backward_filter_bytes = 0;

  std::size_t workspace_bytes() const {
    return std::max(forward_bytes, std::max(backward_data_bytes, backward_filter_bytes));
  }
};

bool gemm_based(cudnnConvolutionFwdAlgo_t algo) {
  return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
         algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}
bool gemm_based(cudnnConvolutionBwdDataAlgo_t algo) {
  return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
bool gemm_based(cudnnConvolutionBwdFilterAlgo_t algo) {
  return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ||
         algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

// The workspace of `algo` for the plan's problem, or false when cuDNN cannot run it.
bool workspace_of(const ConvPlan& plan, cudnnConvolutionFwdAlgo_t algo, std::size_t* bytes) {
  return cudnnGetConvolutionForwardWorkspaceSize(cudnn(), plan.x.handle, plan.weight.handle,
                                                 plan.convolution.handle, plan.y.handle, algo,
                                                 bytes) == CUDNN_STATUS_SUCCESS;
}
bool workspace_of(const ConvPlan& plan, cudnnConvolutionBwdDataAlgo_t algo, std::size_t* bytes) {
  return cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn(), plan.weight.handle, plan.y.handle,
                                                      plan.convolution.handle, plan.x.handle, algo,
                                                      bytes) == CUDNN_STATUS_SUCCESS;
}
bool workspace_of(const ConvPlan& plan, cudnnConvolutionBwdFilterAlgo_t algo, std::size_t* bytes) {
  return cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnn(), plan.x.handle, plan.y.handle,
                                                        plan.convolution.handle, plan.weight.handle,
                                                        algo, bytes) == CUDNN_STATUS_SUCCESS;
}

// An algorithm to try, and whether it gives the same bits on every run.
template <class Algo>
struct Candidate {
  Algo algo;
  bool deterministic;
};

// Training still works on a non-deterministic algorithm, but two runs with the same seed can then
// differ; the user is told once, not once per layer or shape, so the log stays readable.
void warn_nondeterministic(const char* direction, const cpu::Conv2dShape& s, int algo) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr,
                 "warning: Conv2d on CUDA: cuDNN has no deterministic GEMM-based %s algorithm for "
                 "input (%lld, %lld, %lld, %lld), weight (%lld, %lld, %lld, %lld), stride %lld, "
                 "padding %lld; using the non-deterministic algorithm %d, so results can differ "
                 "between runs (said once per process)\n",
                 direction, static_cast<long long>(s.batch), static_cast<long long>(s.in_channels),
                 static_cast<long long>(s.height), static_cast<long long>(s.width),
                 static_cast<long long>(s.out_channels), static_cast<long long>(s.in_channels),
                 static_cast<long long>(s.kernel), static_cast<long long>(s.kernel),
                 static_cast<long long>(s.stride), static_cast<long long>(s.padding), algo);
    std::fflush(stderr);
  });
}

// The policy of the file comment, over cuDNN's ranked candidates `perf` and then `fallbacks`.
// *bytes is the chosen algorithm's own workspace, which conv2d_workspace_size() reports.
template <class Perf, class Algo, std::size_t kFallbacks>
Algo choose(const char* direction, const cpu::Conv2dShape& shape, const ConvPlan& plan,
            const Perf* perf, int count, const std::array<Candidate<Algo>, kFallbacks>& fallbacks,
            std::size_t* bytes) {
  std::vector<Candidate<Algo>> candidates;
  for (int i = 0; i < count; ++i) {
    const Perf& candidate = perf[i];
    if (candidate.status != CUDNN_STATUS_SUCCESS || !gemm_based(candidate.algo)) continue;
    if (candidate.mathType == CUDNN_TENSOR_OP_MATH ||
        candidate.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
      continue;
    }
    candidates.push_back({candidate.algo, candidate.determinism == CUDNN_DETERMINISTIC});
  }
  candidates.insert(candidates.end(), fallbacks.begin(), fallbacks.end());
  for (const bool deterministic : {true, false}) {
    for (const std::size_t cap : {kMaxWorkspaceBytes, std::numeric_limits<std::size_t>::max()}) {
      for (const Candidate<Algo>& candidate : candidates) {
        std::size_t need = 0;
        if (candidate.deterministic != deterministic ||
            !workspace_of(plan, candidate.algo, &need) || need > cap) {
          continue;
        }
        if (!deterministic) {
          warn_nondeterministic(direction, shape, static_cast<int>(candidate.algo));
        }
        *bytes = need;
        return candidate.algo;
      }
    }
  }
  SYNCBN_FAIL("Conv2d: cuDNN has no GEMM-based ", direction, " algorithm for this shape");
}

int checked_int(int64_t value, const char* what) {
  SYNCBN_CHECK(value >= 0 && value <= INT_MAX, "Conv2d on CUDA: ", what, " = ", value,
               " does not fit cuDNN's int dimensions");
  return static_cast<int>(value);
}

std::unique_ptr<ConvPlan> make_plan(const cpu::Conv2dShape& s) {
  const int n = checked_int(s.batch, "batch");
  const int c = checked_int(s.in_channels, "in_channels");
  const int h = checked_int(s.height, "height");
  const int w = checked_int(s.width, "width");
  const int o = checked_int(s.out_channels, "out_channels");
  const int k = checked_int(s.kernel, "kernel");
  const int stride = checked_int(s.stride, "stride");
  const int padding = checked_int(s.padding, "padding");
  const int ho = checked_int(s.out_height, "out_height");
  const int wo = checked_int(s.out_width, "out_width");
  // cuDNN's legacy API indexes tensors with 32-bit offsets.
  checked_int(s.batch * s.in_channels * s.height * s.width, "input elements");
  checked_int(s.batch * s.out_channels * s.out_height * s.out_width, "output elements");
  checked_int(s.out_channels * s.in_channels * s.kernel * s.kernel, "weight elements");

  auto plan = std::make_unique<ConvPlan>();
  SYNCBN_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan->x.handle, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  SYNCBN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y.handle, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                n, o, ho, wo));
  SYNCBN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->weight.handle, CUDNN_DATA_FLOAT,
                                                CUDNN_TENSOR_NCHW, o, c, k, k));
  SYNCBN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->convolution.handle, padding, padding,
                                                     stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT));
  SYNCBN_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->convolution.handle, CUDNN_FMA_MATH));

  int out_n = 0, out_c = 0, out_h = 0, out_w = 0;
  SYNCBN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->convolution.handle, plan->x.handle,
                                                           plan->weight.handle, &out_n, &out_c,
                                                           &out_h, &out_w));
  SYNCBN_CHECK(out_n == n && out_c == o && out_h == ho && out_w == wo,
               "Conv2d on CUDA: cuDNN computes an output of (", out_n, ", ", out_c, ", ", out_h,
               ", ", out_w, "), the shape says (", n, ", ", o, ", ", ho, ", ", wo, ")");

  cudnnHandle_t handle = cudnn();
  {
    std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
    int count = 0;
    SYNCBN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
        handle, plan->x.handle, plan->weight.handle, plan->convolution.handle, plan->y.handle,
        static_cast<int>(perf.size()), &count, perf.data()));
    // Every forward algorithm is deterministic (cuDNN's documentation).
    const std::array<Candidate<cudnnConvolutionFwdAlgo_t>, 2> fallbacks{
        {{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true},
         {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true}}};
    plan->forward_algo =
        choose("forward", s, *plan, perf.data(), count, fallbacks, &plan->forward_bytes);
  }
  {
    std::array<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT> perf{};
    int count = 0;
    SYNCBN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        handle, plan->weight.handle, plan->y.handle, plan->convolution.handle, plan->x.handle,
        static_cast<int>(perf.size()), &count, perf.data()));
    // ALGO_0 sums with atomics, so it is not deterministic; ALGO_1 is (cuDNN's documentation).
    const std::array<Candidate<cudnnConvolutionBwdDataAlgo_t>, 2> fallbacks{
        {{CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true}, {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false}}};
    plan->backward_data_algo = choose("backward-data", s, *plan, perf.data(), count, fallbacks,
                                      &plan->backward_data_bytes);
  }
  {
    std::array<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT> perf{};
    int count = 0;
    SYNCBN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        handle, plan->x.handle, plan->y.handle, plan->convolution.handle, plan->weight.handle,
        static_cast<int>(perf.size()), &count, perf.data()));
    // ALGO_0 sums with atomics, so it is not deterministic; ALGO_1 is (cuDNN's documentation).
    const std::array<Candidate<cudnnConvolutionBwdFilterAlgo_t>, 2> fallbacks{
        {{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true},
         {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false}}};
    plan->backward_filter_algo = choose("backward-filter", s, *plan, perf.data(), count, fallbacks,
                                        &plan->backward_filter_bytes);
  }
  return plan;
}

// Plans by (device, shape), made on first use and kept for the life of the process (leaked, as
// the CUDA context's handles are: destroying descriptors during static destruction would race
// the library's own teardown). A plan never changes once made, so callers may hold a reference.
class PlanCache {
 public:
  const ConvPlan& get(const cpu::Conv2dShape& s) {
    const Key key{current_device(), s.batch,        s.in_channels, s.height,
                  s.width,          s.out_channels, s.kernel,      s.stride,
                  s.padding,        s.out_height,   s.out_width};
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(s)).first;
    return *it->second;
  }

 private:
  using Key = std::array<int64_t, 11>;
  std::mutex mutex_;
  std::map<Key, std::unique_ptr<ConvPlan>> plans_;
};

const ConvPlan& plan_for(const cpu::Conv2dShape& s) {
  static auto* cache = new PlanCache();
  return cache->get(s);
}

void check_workspace(const ConvPlan& plan, const float* workspace) {
  SYNCBN_CHECK(plan.workspace_bytes() == 0 || workspace != nullptr,
               "Conv2d on CUDA: no workspace given (", plan.workspace_bytes(),
               " bytes needed; see conv2d_workspace_size)");
}

}  // namespace

void conv2d_workspace_size(const cpu::Conv2dShape& shape, int64_t* floats) {
  if (shape.batch == 0) {
    *floats = 0;  // nothing to compute; cuDNN rejects empty tensors
    return;
  }
  const std::size_t bytes = plan_for(shape).workspace_bytes();
  *floats = static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));
}

// y = conv(x, weight) (cuDNN, beta = 0 overwrites y), then y += bias per output channel.
void conv2d_forward(const float* x, const float* weight, const float* bias,
                    const cpu::Conv2dShape& s, float* workspace, float* y) {
  if (s.batch == 0) return;
  const ConvPlan& plan = plan_for(s);
  check_workspace(plan, workspace);
  const float one = 1.0f, zero = 0.0f;
  SYNCBN_CUDNN_CHECK(cudnnConvolutionForward(
      cudnn(), &one, plan.x.handle, x, plan.weight.handle, weight, plan.convolution.handle,
      plan.forward_algo, workspace, plan.forward_bytes, &zero, plan.y.handle, y));
  if (bias) add_bias(bias, s.batch, s.out_channels, s.out_height * s.out_width, y);
}

// dbias += sum of dy per channel; dweight += dL/dweight (cuDNN, beta = 1 accumulates);
// dx = dL/dx (cuDNN, beta = 0 overwrites). All on the one stream, so they share the workspace.
void conv2d_backward(const float* x, const float* weight, const float* dy,
                     const cpu::Conv2dShape& s, float* workspace, float* dx, float* dweight,
                     float* dbias) {
  if (s.batch == 0) return;
  const ConvPlan& plan = plan_for(s);
  check_workspace(plan, workspace);
  const float one = 1.0f, zero = 0.0f;
  if (dbias) bias_grad(dy, s.batch, s.out_channels, s.out_height * s.out_width, dbias);
  SYNCBN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      cudnn(), &one, plan.x.handle, x, plan.y.handle, dy, plan.convolution.handle,
      plan.backward_filter_algo, workspace, plan.backward_filter_bytes, &one, plan.weight.handle,
      dweight));
  SYNCBN_CUDNN_CHECK(cudnnConvolutionBackwardData(
      cudnn(), &one, plan.weight.handle, weight, plan.y.handle, dy, plan.convolution.handle,
      plan.backward_data_algo, workspace, plan.backward_data_bytes, &zero, plan.x.handle, dx));
}

}  // namespace syncbn::cuda
