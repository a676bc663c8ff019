#include "syncbn/data/idx.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/error.h"
#include "syncbn/error.h"

namespace syncbn::data {
namespace {

using syncbn::testing::error_of;

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "syncbn-idx-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// An IDX file's bytes, written out by hand: 0 0 type ndim, big-endian uint32 sizes, data.
Bytes idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes counting_bytes(std::size_t n, int start = 0) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((start + i * 7) % 256);
  return out;
}

void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "message: " << (text) << "\nmissing: " << (part)

TEST(IdxTest, ReadsRawAndGzipFilesToTheBytesWritten) {
  TempDir dir;
  const Bytes data = counting_bytes(4 * 3 * 2);
  const Bytes file = idx_bytes(0x08, {4, 3, 2}, data);
  write_raw(dir.file("a.idx"), file);
  write_gz(dir.file("a.idx.gz"), file);
  for (const std::string name : {"a.idx", "a.idx.gz"}) {
    const IdxArray array = read_idx(dir.file(name), 3);
    EXPECT_EQ(array.dims, (std::vector<int64_t>{4, 3, 2})) << name;
    EXPECT_EQ(array.data, data) << name;
  }
  // expected_ndim = 0 accepts any number of dimensions.
  EXPECT_EQ(read_idx(dir.file("a.idx"), 0).dims.size(), 3u);
}

TEST(IdxTest, DimensionsAreBigEndianAndLargerThanOneByte) {
  TempDir dir;
  const Bytes data = counting_bytes(300);
  write_gz(dir.file("labels.gz"), idx_bytes(0x08, {300}, data));
  const IdxArray array = read_idx(dir.file("labels.gz"), 1);
  EXPECT_EQ(array.dims, (std::vector<int64_t>{300}));
  EXPECT_EQ(array.data, data);
}

TEST(IdxTest, MissingFileIsAnErrorNamingTheFile) {
  TempDir dir;
  const std::string path = dir.file("nothing-here.gz");
  const std::string message = error_of([&] { read_idx(path); });
  EXPECT_CONTAINS(message, path);
  EXPECT_CONTAINS(message, "not found");
}

TEST(IdxTest, DirectoryInsteadOfFileIsAnError) {
  TempDir dir;
  EXPECT_CONTAINS(error_of([&] { read_idx(dir.str()); }), "is a directory");
}

TEST(IdxTest, TruncatedHeaderIsAnErrorRawAndGzip) {
  TempDir dir;
  write_raw(dir.file("empty"), {});
  write_raw(dir.file("short-magic"), {0, 0});
  write_gz(dir.file("short-magic.gz"), {0, 0, 8});
  // Magic says 3 dimensions (16-byte header) but only two sizes follow.
  write_raw(dir.file("short-sizes"), {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28});
  write_gz(dir.file("short-sizes.gz"), {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28});
  for (const std::string name :
       {"empty", "short-magic", "short-magic.gz", "short-sizes", "short-sizes.gz"}) {
    const std::string message = error_of([&] { read_idx(dir.file(name), 3); });
    EXPECT_CONTAINS(message, dir.file(name));
    EXPECT_CONTAINS(message, "truncated header");
  }
  EXPECT_CONTAINS(error_of([&] { read_idx(dir.file("short-sizes"), 3); }),
                  "header of 16 bytes, the file has 12");
}

TEST(IdxTest, WrongMagicNumberPrintsExpectedAndFoundInHex) {
  TempDir dir;
  write_raw(dir.file("bad-magic"), {0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0});
  const std::string message = error_of([&] { read_idx(dir.file("bad-magic"), 3); });
  EXPECT_CONTAINS(message, dir.file("bad-magic"));
  EXPECT_CONTAINS(message, "wrong magic number");
  EXPECT_CONTAINS(message, "0x12345678");
  EXPECT_CONTAINS(message, "0x00000803");
}

TEST(IdxTest, UnsupportedElementTypeIsAnError) {
  TempDir dir;
  // 0x0D = float: a valid IDX type that we do not read.
  write_gz(dir.file("floats.gz"), idx_bytes(0x0D, {1}, {0, 0, 0, 0}));
  const std::string message = error_of([&] { read_idx(dir.file("floats.gz"), 1); });
  EXPECT_CONTAINS(message, dir.file("floats.gz"));
  EXPECT_CONTAINS(message, "unsupported element type 0x0D");
  EXPECT_CONTAINS(message, "0x00000D01");
}

TEST(IdxTest, WrongNumberOfDimensionsIsAnError) {
  TempDir dir;
  write_raw(dir.file("labels"), idx_bytes(0x08, {3}, {1, 2, 3}));
  const std::string message = error_of([&] { read_idx(dir.file("labels"), 3); });
  EXPECT_CONTAINS(message, dir.file("labels"));
  EXPECT_CONTAINS(message, "wrong number of dimensions");
  EXPECT_CONTAINS(message, "0x00000801");
  EXPECT_CONTAINS(message, "0x00000803");
  // Zero dimensions is never valid.
  write_raw(dir.file("scalar"), {0, 0, 8, 0, 42});
  EXPECT_CONTAINS(error_of([&] { read_idx(dir.file("scalar")); }), "wrong number of dimensions");
}

TEST(IdxTest, TruncatedDataReportsExpectedAndFoundBytesRawAndGzip) {
  TempDir dir;
  const Bytes file = idx_bytes(0x08, {60000, 28, 28}, counting_bytes(5000));
  write_raw(dir.file("train-images-idx3-ubyte"), file);
  write_gz(dir.file("train-images-idx3-ubyte.gz"), file);
  for (const std::string name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}) {
    const std::string message = error_of([&] { read_idx(dir.file(name), 3); });
    EXPECT_CONTAINS(message, dir.file(name) + ": expected 47040000 bytes of data after the header");
    EXPECT_CONTAINS(message, "file has 5000");
  }
}

TEST(IdxTest, GzipStreamCutShortIsTruncatedData) {
  TempDir dir;
  const Bytes data = counting_bytes(20000);
  write_gz(dir.file("whole.gz"), idx_bytes(0x08, {100, 200}, data));
  Bytes compressed = read_all(dir.file("whole.gz"));
  ASSERT_GT(compressed.size(), 100u);
  compressed.resize(compressed.size() / 2);
  write_raw(dir.file("cut.gz"), compressed);
  const std::string message = error_of([&] { read_idx(dir.file("cut.gz"), 2); });
  EXPECT_CONTAINS(message, dir.file("cut.gz"));
  EXPECT_CONTAINS(message, "expected 20000 bytes of data after the header");
}

TEST(IdxTest, CorruptGzipStreamIsAnError) {
  TempDir dir;
  write_gz(dir.file("whole.gz"), idx_bytes(0x08, {100, 200}, counting_bytes(20000)));
  Bytes compressed = read_all(dir.file("whole.gz"));
  // Keep the 10-byte gzip header, overwrite the deflate stream with garbage.
  for (std::size_t i = 10; i < compressed.size(); ++i) compressed[i] = 0xFF;
  write_raw(dir.file("corrupt.gz"), compressed);
  EXPECT_CONTAINS(error_of([&] { read_idx(dir.file("corrupt.gz"), 2); }), dir.file("corrupt.gz"));
}

TEST(IdxTest, TrailingDataIsAnErrorRawAndGzip) {
  TempDir dir;
  Bytes file = idx_bytes(0x08, {2, 2}, {1, 2, 3, 4});
  file.insert(file.end(), {9, 9, 9});
  write_raw(dir.file("trailing"), file);
  write_gz(dir.file("trailing.gz"), file);
  for (const std::string name : {"trailing", "trailing.gz"}) {
    const std::string message = error_of([&] { read_idx(dir.file(name), 2); });
    EXPECT_CONTAINS(message, dir.file(name));
    EXPECT_CONTAINS(message, "3 bytes of trailing data after the 4 bytes");
  }
}

TEST(IdxTest, DimensionsWhoseProductOverflowsAreAnErrorNotACrash) {
  TempDir dir;
  // (2^32 - 1)^2 wraps a 64-bit product to a negative size; the third dimension would then
  // wrap it to anything at all.
  const Bytes file = idx_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {1, 2, 3});
  write_raw(dir.file("overflow"), file);
  write_gz(dir.file("overflow.gz"), file);
  for (const std::string name : {"overflow", "overflow.gz"}) {
    const std::string message = error_of([&] { read_idx(dir.file(name), 3); });
    EXPECT_CONTAINS(message, dir.file(name));
    EXPECT_CONTAINS(message, "overflows");
  }
}

TEST(IdxTest, HeaderClaimingATebibyteOfATinyFileFailsFastWithoutAllocatingIt) {
  TempDir dir;
  // 2^20 x 2^10 x 2^10 = 2^40 bytes claimed, 10 present.
  const Bytes file = idx_bytes(0x08, {1u << 20, 1u << 10, 1u << 10}, counting_bytes(10));
  write_raw(dir.file("huge"), file);
  write_gz(dir.file("huge.gz"), file);
  for (const std::string name : {"huge", "huge.gz"}) {
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { read_idx(dir.file(name), 3); });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_CONTAINS(message, "expected 1099511627776 bytes of data after the header");
    EXPECT_CONTAINS(message, "file has 10");
    EXPECT_LT(seconds, 2.0) << name;
  }
}

// Writes a Fashion-MNIST-like pair of files; `gz` picks compressed or raw.
void write_pair(const TempDir& dir, const std::string& prefix, uint32_t n_images, uint32_t n_labels,
                uint32_t height, uint32_t width, const Bytes& labels, bool gz) {
  const Bytes images = idx_bytes(0x08, {n_images, height, width},
                                 counting_bytes(std::size_t{n_images} * height * width, 3));
  const Bytes label_file = idx_bytes(0x08, {n_labels}, labels);
  const std::string suffix = gz ? ".gz" : "";
  auto write = gz ? write_gz : write_raw;
  write(dir.file(prefix + "-images-idx3-ubyte" + suffix), images);
  write(dir.file(prefix + "-labels-idx1-ubyte" + suffix), label_file);
}

TEST(FashionMnistTest, MissingDirectoryExplainsHowToGetTheData) {
  TempDir dir;
  const std::string missing = dir.file("no-such-dir");
  const std::string message = error_of([&] { load_fashion_mnist(missing, true); });
  EXPECT_CONTAINS(message, missing);
  EXPECT_CONTAINS(message, "apt-get install dataset-fashion-mnist");
  EXPECT_CONTAINS(message, "--data-dir");
}

TEST(FashionMnistTest, MissingFileIsAnErrorNamingBothCandidates) {
  TempDir dir;
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes(0x08, {1, 2, 2}, {1, 2, 3, 4}));
  const std::string message = error_of([&] { load_fashion_mnist(dir.str(), true); });
  EXPECT_CONTAINS(message, dir.file("train-labels-idx1-ubyte.gz"));
  EXPECT_CONTAINS(message, dir.file("train-labels-idx1-ubyte") + ")");
  // The test split is looked up under its own prefix.
  EXPECT_CONTAINS(error_of([&] { load_fashion_mnist(dir.str(), false); }),
                  dir.file("t10k-images-idx3-ubyte.gz"));
}

TEST(FashionMnistTest, ImageAndLabelCountMismatchIsAnError) {
  TempDir dir;
  write_pair(dir, "train", 3, 2, 28, 28, {0, 1}, true);
  const std::string message = error_of([&] { load_fashion_mnist(dir.str(), true); });
  EXPECT_CONTAINS(message, dir.file("train-images-idx3-ubyte.gz") + " has 3 images but " +
                               dir.file("train-labels-idx1-ubyte.gz") + " has 2 labels");
}

TEST(FashionMnistTest, LabelOutOfRangeIsAnError) {
  TempDir dir;
  write_pair(dir, "t10k", 3, 3, 28, 28, {0, 10, 2}, false);
  const std::string message = error_of([&] { load_fashion_mnist(dir.str(), false); });
  EXPECT_CONTAINS(message, dir.file("t10k-labels-idx1-ubyte"));
  EXPECT_CONTAINS(message, "label 10 of sample 1");
}

TEST(FashionMnistTest, ImagesMustBeThreeDimensional) {
  TempDir dir;
  write_raw(dir.file("train-images-idx3-ubyte"), idx_bytes(0x08, {2, 4}, counting_bytes(8)));
  write_raw(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {2}, {0, 1}));
  EXPECT_CONTAINS(error_of([&] { load_fashion_mnist(dir.str(), true); }),
                  "wrong number of dimensions");
}

TEST(FashionMnistTest, NoImagesIsAnError) {
  TempDir dir;
  write_pair(dir, "train", 0, 0, 28, 28, {}, true);
  EXPECT_CONTAINS(error_of([&] { load_fashion_mnist(dir.str(), true); }), "holds no images");
}

TEST(FashionMnistTest, RawFilesOfAnyImageSizeLoadNormalised) {
  TempDir dir;
  const Bytes labels = {9, 0, 4};
  write_pair(dir, "t10k", 3, 3, 5, 4, labels, false);
  const Dataset dataset = load_fashion_mnist(dir.str(), false);
  EXPECT_EQ(dataset.images.shape(), (Shape{3, 1, 5, 4}));
  EXPECT_EQ(dataset.labels, (std::vector<int32_t>{9, 0, 4}));
  EXPECT_EQ(dataset.num_classes, 10);
  EXPECT_EQ(dataset.name, "fashion-mnist-test");
  const Bytes pixels = counting_bytes(3 * 5 * 4, 3);
  const std::vector<float> values = dataset.images.to_vector();
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    const double expected = (pixels[i] / 255.0 - 0.2860) / 0.3530;
    EXPECT_NEAR(values[i], expected, 1e-6) << "pixel " << i;
  }
}

TEST(FashionMnistTest, GzipFileIsPreferredWhenBothExist) {
  TempDir dir;
  write_pair(dir, "train", 2, 2, 2, 2, {7, 7}, true);
  write_pair(dir, "train", 2, 2, 2, 2, {1, 1}, false);
  EXPECT_EQ(load_fashion_mnist(dir.str(), true).labels, (std::vector<int32_t>{7, 7}));
}

bool have_fashion_mnist() { return fs::is_directory(kFashionMnistDefaultDir); }

TEST(FashionMnistTest, RealTrainingSetHasBalancedClassesAndUnitStatistics) {
  if (!have_fashion_mnist()) {
    GTEST_SKIP() << kFashionMnistDefaultDir
                 << " is missing (apt-get install dataset-fashion-mnist)";
  }
  const auto start = std::chrono::steady_clock::now();
  const Dataset dataset = load_fashion_mnist(kFashionMnistDefaultDir, true);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("load_fashion_mnist(train): %.3f s\n", seconds);
  // Generous against a loaded 2-core machine; a per-byte reader takes many seconds.
  EXPECT_LT(seconds, 5.0);

  EXPECT_EQ(dataset.size(), 60000);
  EXPECT_EQ(dataset.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(dataset.num_classes, 10);
  EXPECT_EQ(class_counts(dataset), std::vector<int64_t>(10, 6000));

  double sum = 0, sum_squares = 0;
  const float* x = dataset.images.data();
  for (int64_t i = 0; i < dataset.images.numel(); ++i) {
    sum += x[i];
    sum_squares += double{x[i]} * x[i];
  }
  const double n = static_cast<double>(dataset.images.numel());
  const double mean = sum / n;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(sum_squares / n - mean * mean), 1.0, 0.01);

  // The first image against the raw bytes, normalised here in double.
  const IdxArray raw =
      read_idx(std::string(kFashionMnistDefaultDir) + "/train-images-idx3-ubyte.gz", 3);
  for (int k = 0; k < 28 * 28; ++k) {
    ASSERT_NEAR(x[k], (raw.data[k] / 255.0 - 0.2860) / 0.3530, 1e-6) << "pixel " << k;
  }
}

TEST(FashionMnistTest, RealTestSetHasTenThousandBalancedSamples) {
  if (!have_fashion_mnist()) {
    GTEST_SKIP() << kFashionMnistDefaultDir
                 << " is missing (apt-get install dataset-fashion-mnist)";
  }
  const Dataset dataset = load_fashion_mnist(kFashionMnistDefaultDir, false);
  EXPECT_EQ(dataset.size(), 10000);
  EXPECT_EQ(dataset.images.shape(), (Shape{10000, 1, 28, 28}));
  EXPECT_EQ(class_counts(dataset), std::vector<int64_t>(10, 1000));
  EXPECT_NO_THROW(check_dataset(dataset));
}

}  // namespace
}  // namespace syncbn::data
