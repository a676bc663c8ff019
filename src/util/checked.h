#pragma once
// Overflow-checked size arithmetic for host code (throws syncbn::Error; not for CUDA kernels,
// which take sizes already checked here).
// defines: checked_mul, checked_product
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/error.h"

namespace syncbn {

// a * b for a, b >= 0, or a syncbn::Error naming `what` when the product exceeds int64.
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) {
    SYNCBN_FAIL(what, ": ", a, " * ", b, " overflows a 64-bit size");
  }
  return product;
}

// The product of `sizes` (each >= 0), or a syncbn::Error naming `what` and the sizes when it
// exceeds int64. A zero anywhere makes the product 0 without overflow.
inline int64_t checked_product(const std::vector<int64_t>& sizes, const std::string& what) {
  int64_t product = 1;
  for (int64_t size : sizes) {
    if (__builtin_mul_overflow(product, size, &product)) {
      std::string list;
      for (std::size_t i = 0; i < sizes.size(); ++i)
        list += (i ? " x " : "") + std::to_string(sizes[i]);
      SYNCBN_FAIL(what, ": ", list, " overflows a 64-bit size");
    }
  }
  return product;
}

}  // namespace syncbn
