// The tests' closeness checks (tests/support/close.h) themselves: each accepts a difference equal
// to its bound, rejects one past it with a message naming the element, and never calls NaN close.
#include "support/close.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <limits>
#include <vector>

namespace syncbn {
namespace {

using testing::expect_close;
using testing::expect_close_rel;

// Binary fractions throughout, so that every difference and bound below is exact.
TEST(CloseTest, ExpectCloseHoldsEachElementToAtolPlusRtolTimesExpected) {
  const std::vector<double> expected = {1.0, -2.0};
  expect_close(std::vector<float>{1.75f, -3.0f}, expected, 0.25, 0.5, "at the bound");
  EXPECT_NONFATAL_FAILURE(
      expect_close(std::vector<float>{1.75f, -3.0625f}, expected, 0.25, 0.5, "past it"),
      "past it: 1 of 2 elements out of tolerance; first at index 1: actual -3.0625, expected -2, "
      "|actual - expected| 1.06 > tolerance 1 = atol 0.5 + rtol 0.25 * |expected|");
}

TEST(CloseTest, ExpectCloseTakesOneAtolPerElement) {
  expect_close({0.5, 0.25}, {0.0, 0.0}, 0.0, {0.5, 0.25}, "at the bounds");
  EXPECT_NONFATAL_FAILURE(expect_close({0.5, 0.5}, {0.0, 0.0}, 0.0, {0.5, 0.25}, "past one"),
                          "first at index 1: actual 0.5, expected 0, |actual - expected| 0.5 > "
                          "tolerance 0.25 = atol[1] 0.25 + rtol 0 * |expected|");
}

// Elements below floor times the largest |expected| are held to rtol times that floor.
TEST(CloseTest, ExpectCloseRelFloorsTheScaleAtAFractionOfTheLargestElement) {
  const std::vector<double> expected = {256.0, 0.0};
  // Tolerances: 2^-4 * 256 + 1e-7 and 2^-4 * (2^-4 * 256) + 1e-7 = 1 + 1e-7.
  expect_close_rel({272.0, 1.0}, expected, 0.0625, "at the bounds", 0.0625);
  EXPECT_NONFATAL_FAILURE(
      expect_close_rel({256.0, 1.125}, expected, 0.0625, "past the floor", 0.0625),
      "past the floor: 1 of 2 elements out of tolerance; first at index 1");
}

TEST(CloseTest, NaNIsCloseToNothing) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NONFATAL_FAILURE(expect_close({nan}, {nan}, inf, inf, "nan"), "nan: 1 of 1");
  EXPECT_NONFATAL_FAILURE(expect_close_rel({0.0}, {nan}, 1.0, "nan expected"), "nan expected");
}

TEST(CloseTest, SizesAndShapesMustMatch) {
  EXPECT_FATAL_FAILURE(expect_close({1.0, 2.0}, {1.0}, 0.0, 0.0, "sizes"), "sizes");
  EXPECT_FATAL_FAILURE(
      expect_close(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}), 0.0, 0.0, "shapes"), "shapes");
}

}  // namespace
}  // namespace syncbn
