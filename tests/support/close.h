#pragma once
// The closeness checks of every test: computed numbers against reference numbers, element by
// element. A check fails once, naming the first element out of tolerance (index, both values,
// their difference and the tolerance) and how many elements are out.
//
//   expect_close(actual, expected, rtol, atol, what)
//       |a_i - e_i| <= atol + rtol |e_i|                       (numpy.allclose)
//   expect_close(actual, expected, rtol, atols, what)
//       |a_i - e_i| <= atols_i + rtol |e_i|                    (a bound per element, e.g. the
//                                                               rounding of a sum, from the sum
//                                                               of the magnitudes of its terms)
//   expect_close_rel(actual, expected, rtol, what, floor = 1e-3)
//       |a_i - e_i| <= rtol max(|e_i|, floor max_j |e_j|) + 1e-7
//       relative to each element, but elements far below the largest (results of cancellation,
//       whose rounding follows the magnitudes they came from) are held to floor times the largest
//
// actual and expected are float or double vectors, braced lists, or Tensors of the same shape
// (compared on the host, wherever they live). NaN and infinity are never close to anything.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::testing {

// Numbers to compare, widened to double (exactly, from float). Converts implicitly so that the
// checks take float and double vectors and braced lists alike.
class Numbers {
 public:
  Numbers(const std::vector<float>& values) : values_(values.begin(), values.end()) {}
  Numbers(const std::vector<double>& values) : values_(values) {}
  Numbers(std::initializer_list<double> values) : values_(values) {}

  std::size_t size() const { return values_.size(); }
  double operator[](std::size_t i) const { return values_[i]; }

 private:
  std::vector<double> values_;
};

namespace detail {

inline std::string describe(double value) {
  std::ostringstream text;
  text.precision(3);
  text << value;
  return text.str();
}

// Fails once if some |actual_i - expected_i| <= tolerance(i) does not hold; bound(i) writes
// tolerance(i)'s formula for the message.
template <class Tolerance, class Bound>
void expect_within(const Numbers& actual, const Numbers& expected, const Tolerance& tolerance,
                   const Bound& bound, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what << ": actual and expected sizes differ";
  std::size_t out = 0, first = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (!(std::fabs(actual[i] - expected[i]) <= tolerance(i)) && out++ == 0) first = i;
  }
  if (out == 0) return;
  std::ostringstream message;
  message.precision(9);
  message << what << ": " << out << " of " << actual.size()
          << " elements out of tolerance; first at index " << first << ": actual " << actual[first]
          << ", expected " << expected[first] << ", |actual - expected| "
          << describe(std::fabs(actual[first] - expected[first])) << " > tolerance "
          << describe(tolerance(first)) << " = " << bound(first);
  ADD_FAILURE() << message.str();
}

}  // namespace detail

// |a_i - e_i| <= atol + rtol |e_i|.
inline void expect_close(const Numbers& actual, const Numbers& expected, double rtol, double atol,
                         const std::string& what) {
  detail::expect_within(
      actual, expected, [&](std::size_t i) { return atol + rtol * std::fabs(expected[i]); },
      [&](std::size_t) {
        return "atol " + detail::describe(atol) + " + rtol " + detail::describe(rtol) +
               " * |expected|";
      },
      what);
}

// |a_i - e_i| <= atols_i + rtol |e_i|: an absolute bound per element.
inline void expect_close(const Numbers& actual, const Numbers& expected, double rtol,
                         const Numbers& atols, const std::string& what) {
  ASSERT_EQ(atols.size(), expected.size()) << what << ": one atol per element";
  detail::expect_within(
      actual, expected, [&](std::size_t i) { return atols[i] + rtol * std::fabs(expected[i]); },
      [&](std::size_t i) {
        return "atol[" + std::to_string(i) + "] " + detail::describe(atols[i]) + " + rtol " +
               detail::describe(rtol) + " * |expected|";
      },
      what);
}

// |a_i - e_i| <= rtol max(|e_i|, floor max_j |e_j|) + 1e-7.
inline void expect_close_rel(const Numbers& actual, const Numbers& expected, double rtol,
                             const std::string& what, double floor = 1e-3) {
  double scale = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    scale = std::max(scale, std::fabs(expected[i]));
  }
  detail::expect_within(
      actual, expected,
      [&](std::size_t i) { return rtol * std::max(std::fabs(expected[i]), floor * scale) + 1e-7; },
      [&](std::size_t) {
        return "rtol " + detail::describe(rtol) + " * max(|expected|, floor " +
               detail::describe(floor) + " * max|expected| " + detail::describe(scale) +
               ") + 1e-07";
      },
      what);
}

// The same on Tensors, which must have the same shape.
inline void expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                         const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  expect_close(actual.to_vector(), expected.to_vector(), rtol, atol, what);
}

inline void expect_close_rel(const Tensor& actual, const Tensor& expected, double rtol,
                             const std::string& what, double floor = 1e-3) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  expect_close_rel(actual.to_vector(), expected.to_vector(), rtol, what, floor);
}

}  // namespace syncbn::testing
