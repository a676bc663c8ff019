#pragma once
// The IDX format of (Fashion-)MNIST, and the Fashion-MNIST loader built on it.
//
// IDX layout: a 4-byte magic number 0x00 0x00 <type> <ndim> (type 0x08 = unsigned byte, the
// only type we read), then ndim big-endian uint32 sizes, then prod(sizes) bytes row-major.
// Files may be gzip-compressed or raw: zlib reads both transparently.
#include <cstdint>
#include <string>
#include <vector>

#include "syncbn/data/dataset.h"

namespace syncbn::data {

struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {60000, 28, 28}
  std::vector<uint8_t> data;  // prod(dims) bytes, row-major

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
};

// Reads an unsigned-byte IDX file, gzip or raw. expected_ndim > 0 also requires that number of
// dimensions (magic 0x0000080<ndim>); 0 accepts any. Every malformed input is a syncbn::Error
// whose message starts with the path and names the problem: missing file, truncated header,
// wrong magic number (expected and found in hex), unsupported element type, wrong number of
// dimensions, truncated data (expected and found byte counts), trailing data.
IdxArray read_idx(const std::string& path, int expected_ndim = 0);

// Where Debian's dataset-fashion-mnist package installs the data.
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
// Pixel mean and standard deviation of the Fashion-MNIST training set (pixels scaled to [0, 1]).
inline constexpr double kFashionMnistMean = 0.2860;
inline constexpr double kFashionMnistStd = 0.3530;
inline constexpr int64_t kFashionMnistClasses = 10;

// Loads <dir>/<prefix>-images-idx3-ubyte[.gz] and <dir>/<prefix>-labels-idx1-ubyte[.gz] with
// prefix "train" (60000 samples) or "t10k" (10000), the .gz file preferred when both exist.
// Images become (N, 1, H, W) with x = (pixel / 255 - kFashionMnistMean) / kFashionMnistStd.
// Errors: missing directory (the message says how to get the data), missing file, image and
// label counts that differ, images that are not 3-D, no samples, labels >= 10.
Dataset load_fashion_mnist(const std::string& dir, bool train);

}  // namespace syncbn::data
