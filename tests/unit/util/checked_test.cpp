#include "util/checked.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "util/format.h"

namespace syncbn {
namespace {

TEST(CheckedTest, ProductsThatFitAreExact) {
  EXPECT_EQ(checked_mul(3037000499, 3037000499, "x"), 9223372030926249001);
  EXPECT_EQ(checked_product({60000, 28, 28}, "x"), 47040000);
  EXPECT_EQ(checked_product({}, "x"), 1);
  // A zero anywhere is 0, even after sizes whose product alone would overflow.
  EXPECT_EQ(checked_product({int64_t{1} << 62, 0, int64_t{1} << 62}, "x"), 0);
}

TEST(CheckedTest, OverflowIsAnErrorNamingWhatAndTheSizes) {
  try {
    checked_product({int64_t{1} << 32, int64_t{1} << 31, 2}, "tensor shape");
    FAIL() << "expected a syncbn::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "tensor shape: 4294967296 x 2147483648 x 2 overflows a 64-bit size"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(checked_mul(std::numeric_limits<int64_t>::max(), 2, "bytes"), Error);
  EXPECT_THROW(checked_mul(3037000500, 3037000500, "bytes"), Error);
}

TEST(FormatTest, QuoteBriefEscapesBinaryAndCutsLongText) {
  EXPECT_EQ(quote_brief("mlp"), "'mlp'");
  EXPECT_EQ(quote_brief(std::string("a\0b\n\xff", 5)), "'a\\x00b\\x0A\\xFF'");
  const std::string quoted = quote_brief(std::string(10240, 'x'));
  EXPECT_EQ(quoted, "'" + std::string(80, 'x') + "...' (10240 bytes)");
  EXPECT_EQ(quote_brief(std::string(80, 'y')), "'" + std::string(80, 'y') + "'");
}

TEST(FormatTest, ByteSizesReadInBinaryUnits) {
  EXPECT_EQ(byte_size_str(512), "512 bytes");
  EXPECT_EQ(byte_size_str(1.5 * (1 << 30)), "1.5 GiB");
  EXPECT_EQ(byte_size_str(400000000000.0), "373 GiB");
}

}  // namespace
}  // namespace syncbn
