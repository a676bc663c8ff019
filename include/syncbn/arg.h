#pragma once
// SYNCBN_ARG(T, name): one option of an options class in one line, with its default, in the
// manner of the PyTorch C++ frontend's TORCH_ARG (torch/csrc/api/include/torch/arg.h):
//
//   struct SgdOptions {
//     SYNCBN_ARG(double, lr) = 0.1;
//     SYNCBN_ARG(bool, nesterov) = false;
//   };
//
//   const auto options = SgdOptions().lr(0.05).nesterov(true);  // setters chain
//   double lr = options.lr();                                    // getter
//
// It declares, public:
//   name(value)  sets the option and returns *this (from a const T& or, moving, from a T&&);
//   name() const returns a const reference to the value; name() on a non-const object returns
//                a reference, so `options.lr() *= 2` works as on a field;
// and the private member name_, which the initializer after the macro (`= 0.1`) initializes;
// without one, name_ is default-initialized (a constructor that takes the option sets it).
// The macro ends in `private:`: members declared after it are private unless a `public:`
// follows. Options classes validate nothing in their setters; the class that consumes the
// options checks them (Sgd, BatchNorm, make_synthetic, lr_at, ...).
#include <utility>

#define SYNCBN_ARG(T, name)                                \
 public:                                                   \
  auto& name(const T& new_##name) {                        \
    this->name##_ = new_##name;                            \
    return *this;                                          \
  }                                                        \
  auto& name(T&& new_##name) {                             \
    this->name##_ = std::move(new_##name);                 \
    return *this;                                          \
  }                                                        \
  const T& name() const noexcept { return this->name##_; } \
  T& name() noexcept { return this->name##_; }             \
                                                           \
 private:                                                  \
  T name##_
