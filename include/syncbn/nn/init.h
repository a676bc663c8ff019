#pragma once
// Weight initialisation schemes applied to a whole model, deterministic per seed.
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"
#include "syncbn/random.h"

namespace syncbn::nn {

enum class InitScheme {
  kKaiming,   // normal(0, sqrt(2 / fan_in)): He et al. 2015, for ReLU networks (the default)
  kXavier,    // normal(0, sqrt(2 / (fan_in + fan_out))): Glorot & Bengio 2010
  kSmall,     // normal(0, 0.01)
  kLarge,     // normal(0, 1)
  kZeros,     // all weights 0 (breaks symmetry-breaking; for experiments)
  kConstant,  // every weight the same value V ("constant:V"; for experiments, e.g. constant:10)
};

// A scheme and, for kConstant, its value.
struct InitSpec {
  InitScheme scheme = InitScheme::kKaiming;
  float value = 0.0f;  // kConstant only
};

// "kaiming" | "xavier" | "small" | "large" | "zeros"; anything else throws syncbn::Error listing
// the valid names.
InitScheme parse_init_scheme(const std::string& name);
std::string init_scheme_name(InitScheme scheme);
// parse_init_scheme's names, or "constant:V" with V a finite float ("constant:10",
// "constant:-0.5"); anything else throws syncbn::Error naming the text and the valid forms.
InitSpec parse_init(const std::string& text);

// Re-initialises every parameter of `model`:
//  - ndim >= 2 (Linear/Conv weights, shape [out, in, k...]): drawn by `scheme`, with
//    fan_in = shape[1] * prod(shape[2:]) and fan_out = shape[0] * prod(shape[2:]); every element
//    spec.value for kConstant;
//  - ndim <= 1 named "...bias" (layer and norm biases): 0;
//  - ndim <= 1 named "...weight" with is_norm_or_bias (norm weights, gamma): 1;
//  - any other parameter keeps its value (a layer's own default, such as PReLU's slope).
// The i-th parameter (in named_parameters() order) draws from Generator(derive_seed(seed, i)),
// so the result depends only on (seed, model structure), on any device.
void initialize(Module& model, const InitSpec& spec, uint64_t seed);
inline void initialize(Module& model, InitScheme scheme, uint64_t seed) {
  initialize(model, InitSpec{scheme, 0.0f}, seed);
}

// A tensor of `shape` drawn from U(-bound, bound): PyTorch's default initialisation of Linear
// and Conv2d (bound = 1/sqrt(fan_in)), which the layers' constructors use.
Tensor uniform_tensor(const Shape& shape, float bound, Generator& generator);

}  // namespace syncbn::nn
