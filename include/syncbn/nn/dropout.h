#pragma once
// Dropout (torch.nn.Dropout): in training, each element is zeroed with probability p and the
// kept ones are scaled by 1 / (1 - p) (inverted dropout); in eval it is the identity.
#include <cstdint>
#include <string>

#include "syncbn/nn/module.h"
#include "syncbn/random.h"

namespace syncbn::nn {

class Dropout : public Module {
 public:
  // p in [0, 1]. The masks come from Generator(seed), which every training forward advances,
  // so a run is reproducible from its seed.
  explicit Dropout(float p = 0.5f, uint64_t seed = 0);

  std::string type_name() const override { return "Dropout"; }
  std::string describe() const override;  // "p=0.5, inplace=False"
  float p() const { return p_; }
  // Advances the mask stream past `forwards` training forwards (each draws one mask seed when
  // 0 < p < 1), as a run resumed at step S does with S: its masks are then an uninterrupted run's.
  void skip_masks(int64_t forwards);

 protected:
  Tensor forward_impl(const Tensor& x) override;
  Tensor backward_impl(const Tensor& dy) override;

 private:
  float p_;
  Generator generator_;
  // What the last forward did to its input: kIdentity (eval or p = 0), kZero (p = 1), or kMask.
  enum class Applied { kNone, kIdentity, kZero, kMask } applied_ = Applied::kNone;
  Shape input_shape_;
  Tensor mask_;  // 1 / (1 - p) where kept, 0 where dropped
};

}  // namespace syncbn::nn
