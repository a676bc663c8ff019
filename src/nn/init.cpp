#include "syncbn/nn/init.h"

#include <charconv>
#include <cmath>
#include <vector>

#include "syncbn/error.h"
#include "syncbn/random.h"

namespace syncbn::nn {

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Standard deviation of the normal distribution that `scheme` draws a weight of `shape` from.
double weight_std(InitScheme scheme, const Shape& shape) {
  int64_t receptive_field = 1;
  for (std::size_t d = 2; d < shape.size(); ++d) receptive_field *= shape[d];
  const double fan_in = static_cast<double>(shape[1] * receptive_field);
  const double fan_out = static_cast<double>(shape[0] * receptive_field);
  switch (scheme) {
    case InitScheme::kKaiming:
      return std::sqrt(2.0 / fan_in);
    case InitScheme::kXavier:
      return std::sqrt(2.0 / (fan_in + fan_out));
    case InitScheme::kSmall:
      return 0.01;
    case InitScheme::kLarge:
      return 1.0;
    case InitScheme::kZeros:
    case InitScheme::kConstant:  // not drawn: initialize() fills the value
      return 0.0;
  }
  SYNCBN_FAIL("invalid InitScheme ", static_cast<int>(scheme));
}

}  // namespace

InitScheme parse_init_scheme(const std::string& name) {
  if (name == "kaiming") return InitScheme::kKaiming;
  if (name == "xavier") return InitScheme::kXavier;
  if (name == "small") return InitScheme::kSmall;
  if (name == "large") return InitScheme::kLarge;
  if (name == "zeros") return InitScheme::kZeros;
  SYNCBN_FAIL("unknown init scheme '", name,
              "': expected kaiming (default), xavier, small, large, zeros or constant:V");
}

InitSpec parse_init(const std::string& text) {
  const std::string prefix = "constant:";
  if (text.rfind(prefix, 0) != 0) return {parse_init_scheme(text), 0.0f};
  const std::string number = text.substr(prefix.size());
  float value = 0.0f;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  SYNCBN_CHECK(error == std::errc() && end == number.data() + number.size() && !number.empty() &&
                   std::isfinite(value),
               "--init ", text, ": constant:V needs a finite number V (e.g. constant:10)");
  return {InitScheme::kConstant, value};
}

std::string init_scheme_name(InitScheme scheme) {
  switch (scheme) {
    case InitScheme::kKaiming:
      return "kaiming";
    case InitScheme::kXavier:
      return "xavier";
    case InitScheme::kSmall:
      return "small";
    case InitScheme::kLarge:
      return "large";
    case InitScheme::kZeros:
      return "zeros";
    case InitScheme::kConstant:
      return "constant";
  }
  SYNCBN_FAIL("invalid InitScheme ", static_cast<int>(scheme));
}

void initialize(Module& model, const InitSpec& spec, uint64_t seed) {
  const InitScheme scheme = spec.scheme;
  const auto named = model.named_parameters();
  for (std::size_t index = 0; index < named.size(); ++index) {
    const auto& [name, param] = named[index];
    Tensor& value = param->value;
    if (value.numel() == 0) continue;
    if (value.ndim() >= 2) {
      if (scheme == InitScheme::kConstant) {
        value.fill_(spec.value);
        continue;
      }
      const double std = weight_std(scheme, value.shape());
      if (std == 0.0) {
        value.zero_();
        continue;
      }
      Generator generator(derive_seed(seed, index));
      std::vector<float> host(static_cast<std::size_t>(value.numel()));
      for (float& v : host) v = static_cast<float>(std * generator.normal());
      value.copy_from(Tensor::from_vector(value.shape(), host));
    } else if (ends_with(name, "bias")) {
      value.zero_();
    } else if (ends_with(name, "weight") && param->is_norm_or_bias) {
      value.fill_(1.0f);
    }
  }
}

Tensor uniform_tensor(const Shape& shape, float bound, Generator& generator) {
  std::vector<float> values(static_cast<std::size_t>(shape_numel(shape)));
  for (auto& v : values) v = generator.uniform(-bound, bound);
  return Tensor::from_vector(shape, values);
}

}  // namespace syncbn::nn
