#include "syncbn/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "syncbn/error.h"
#include "util/checked.h"

namespace syncbn::data {

namespace {

namespace fs = std::filesystem;

constexpr uint8_t kUnsignedByte = 0x08;
// Larger than any dataset we would hold in memory: a header that claims more is corrupt.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 40;
// The first read is at most this long and each later one doubles what the file has proven to
// hold, so a header that claims a huge size cannot make us allocate it before the data is
// there (a 47 MB Fashion-MNIST file takes 11 reads).
constexpr int64_t kFirstReadBytes = int64_t{64} << 10;

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", value);
  return text;
}

std::string hex8(uint32_t value) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", value);
  return text;
}

const char* element_type_name(uint8_t type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "short";
    case 0x0C:
      return "int";
    case 0x0D:
      return "float";
    case 0x0E:
      return "double";
    default:
      return "unknown";
  }
}

// Owns a zlib file handle (gzip or, transparently, raw).
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    SYNCBN_CHECK(fs::exists(status), path, ": file not found");
    SYNCBN_CHECK(!fs::is_directory(status), path, ": is a directory, expected an IDX file");
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    SYNCBN_CHECK(file_ != nullptr, path, ": cannot open (",
                 errno ? std::strerror(errno) : "out of memory", ")");
    // A larger input buffer than zlib's 8 KiB default: fewer read() calls on big files.
    gzbuffer(file_, 1 << 17);
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes into dst; fewer only at the end of the data. Throws on a corrupt stream.
  int64_t read(uint8_t* dst, int64_t n) {
    int64_t total = 0;
    while (total < n) {
      const auto piece =
          static_cast<unsigned>(std::min<int64_t>(n - total, std::numeric_limits<int>::max()));
      const int got = gzread(file_, dst + total, piece);
      if (got < 0) {
        int code = 0;
        const char* message = gzerror(file_, &code);
        SYNCBN_FAIL(path_, ": cannot read (", message, "); the file is corrupt, get it again");
      }
      if (got == 0) break;
      total += got;
    }
    return total;
  }

  // True when the file is not gzip-compressed and zlib passes its bytes through (valid after the
  // first read).
  bool raw() { return gzdirect(file_) == 1; }

  // True when the data ended because a gzip stream was cut short (not at a clean end).
  bool gzip_cut_short() {
    int code = 0;
    gzerror(file_, &code);
    return code == Z_BUF_ERROR;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

// Returns the number of dimensions after checking the 4-byte magic number.
int check_magic(const std::string& path, const std::array<uint8_t, 4>& magic, int expected_ndim) {
  const uint32_t found = uint32_t{magic[0]} << 24 | uint32_t{magic[1]} << 16 |
                         uint32_t{magic[2]} << 8 | uint32_t{magic[3]};
  const std::string expected =
      expected_ndim > 0 ? hex32(uint32_t{kUnsignedByte} << 8 | static_cast<uint32_t>(expected_ndim))
                        : "0x000008NN (unsigned byte, NN dimensions)";
  SYNCBN_CHECK(magic[0] == 0 && magic[1] == 0, path, ": wrong magic number ", hex32(found),
               ", expected ", expected, "; not an IDX file");
  SYNCBN_CHECK(magic[2] == kUnsignedByte, path, ": unsupported element type ", hex8(magic[2]), " (",
               element_type_name(magic[2]), ") in magic number ", hex32(found),
               "; only 0x08 (unsigned byte) is supported");
  const int ndim = magic[3];
  SYNCBN_CHECK(ndim > 0, path, ": wrong number of dimensions: magic number ", hex32(found),
               " declares 0");
  SYNCBN_CHECK(expected_ndim <= 0 || ndim == expected_ndim, path,
               ": wrong number of dimensions: magic number ", hex32(found), " declares ", ndim,
               ", expected ", expected_ndim, " (magic ", expected, ")");
  return ndim;
}

// Finds <dir>/<base>.gz or else <dir>/<base>.
std::string find_idx_file(const std::string& dir, const std::string& base, const char* what) {
  const fs::path gz = fs::path(dir) / (base + ".gz");
  const fs::path raw = fs::path(dir) / base;
  std::error_code ec;
  if (fs::is_regular_file(gz, ec)) return gz.string();
  if (fs::is_regular_file(raw, ec)) return raw.string();
  SYNCBN_FAIL(dir, ": Fashion-MNIST ", what, " file not found (looked for ", gz.string(), " and ",
              raw.string(), ")");
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_ndim) {
  GzFile file(path);
  std::array<uint8_t, 4> magic{};
  const int64_t magic_bytes = file.read(magic.data(), 4);
  SYNCBN_CHECK(magic_bytes == 4, path, ": truncated header: the file has ", magic_bytes,
               " bytes, an IDX header needs at least 4");
  const int ndim = check_magic(path, magic, expected_ndim);

  std::vector<uint8_t> sizes(static_cast<std::size_t>(4 * ndim));
  const int64_t size_bytes = file.read(sizes.data(), 4 * ndim);
  SYNCBN_CHECK(size_bytes == 4 * ndim, path, ": truncated header: ", ndim,
               " dimensions need a header of ", 4 + 4 * ndim, " bytes, the file has ",
               4 + size_bytes);
  IdxArray array;
  int64_t expected_bytes = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* s = &sizes[static_cast<std::size_t>(4 * d)];
    const int64_t dim = int64_t{s[0]} << 24 | int64_t{s[1]} << 16 | int64_t{s[2]} << 8 | s[3];
    array.dims.push_back(dim);
    expected_bytes = checked_mul(expected_bytes, dim, path + ": header dimensions");
    SYNCBN_CHECK(expected_bytes <= kMaxIdxBytes, path, ": header declares dimensions ",
                 shape_str(array.dims), "..., more than ", kMaxIdxBytes, " bytes; corrupt header");
  }

  const int64_t header_bytes = 4 + 4 * int64_t{ndim};
  if (file.raw()) {
    // A raw file's size is known: a header that claims more than the file holds fails here,
    // before anything is allocated.
    std::error_code ec;
    const auto file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
    if (!ec && file_bytes - header_bytes < expected_bytes) {
      SYNCBN_FAIL(path, ": expected ", expected_bytes,
                  " bytes of data after the header (dimensions ", shape_str(array.dims),
                  "), file has ", file_bytes - header_bytes,
                  "; the file is truncated, get it again");
    }
  }

  // Geometric growth from a small first read: the data must prove the size the header claims.
  int64_t have = 0;
  while (have < expected_bytes) {
    const int64_t target = std::min(expected_bytes, std::max(kFirstReadBytes, 2 * have));
    array.data.resize(static_cast<std::size_t>(target));
    const int64_t got = file.read(array.data.data() + have, target - have);
    have += got;
    if (have < target) break;
  }
  if (have < expected_bytes) {
    SYNCBN_FAIL(path, ": expected ", expected_bytes, " bytes of data after the header (dimensions ",
                shape_str(array.dims), "), file has ", have,
                file.gzip_cut_short() ? " (the gzip stream is cut short)" : "",
                "; the file is truncated, get it again");
  }

  // Anything after the data means the header and the data disagree.
  std::array<uint8_t, 1 << 16> scratch;
  int64_t trailing = 0;
  for (int64_t got; (got = file.read(scratch.data(), scratch.size())) > 0;) trailing += got;
  SYNCBN_CHECK(trailing == 0, path, ": ", trailing, " bytes of trailing data after the ",
               expected_bytes, " bytes that the header declares (dimensions ",
               shape_str(array.dims), "); the file is corrupt");
  return array;
}

Dataset load_fashion_mnist(const std::string& dir, bool train) {
  std::error_code ec;
  SYNCBN_CHECK(
      fs::is_directory(dir, ec), "Fashion-MNIST data directory '", dir,
      "' not found. Install the data with `apt-get install dataset-fashion-mnist` (it goes "
      "to ",
      kFashionMnistDefaultDir, "), or pass --data-dir <directory holding ",
      "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
      "t10k-labels-idx1-ubyte.gz>");
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix + "-images-idx3-ubyte", "images");
  const std::string labels_path = find_idx_file(dir, prefix + "-labels-idx1-ubyte", "labels");

  const IdxArray images = read_idx(images_path, 3);
  const IdxArray labels = read_idx(labels_path, 1);
  const int64_t n = images.dims[0];
  SYNCBN_CHECK(n == labels.dims[0], images_path, " has ", n, " images but ", labels_path, " has ",
               labels.dims[0], " labels");
  SYNCBN_CHECK(n > 0, images_path, " holds no images");
  SYNCBN_CHECK(images.dims[1] > 0 && images.dims[2] > 0, images_path, ": images of size ",
               images.dims[1], "x", images.dims[2], " are empty");

  Dataset dataset;
  dataset.name = train ? "fashion-mnist-train" : "fashion-mnist-test";
  dataset.num_classes = kFashionMnistClasses;
  dataset.labels.resize(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t label = labels.data[static_cast<std::size_t>(i)];
    SYNCBN_CHECK(label < kFashionMnistClasses, labels_path, ": label ", int{label}, " of sample ",
                 i, " is out of range; Fashion-MNIST has ", kFashionMnistClasses, " classes (0-9)");
    dataset.labels[static_cast<std::size_t>(i)] = label;
  }

  // x = (pixel / 255 - mean) / std, computed in double once per byte value.
  std::array<float, 256> normalised;
  for (int v = 0; v < 256; ++v) {
    normalised[v] = static_cast<float>((v / 255.0 - kFashionMnistMean) / kFashionMnistStd);
  }
  dataset.images = Tensor::empty({n, 1, images.dims[1], images.dims[2]});
  float* out = dataset.images.data();
  const uint8_t* pixels = images.data.data();
  const int64_t count = images.numel();
#pragma omp parallel for schedule(static) if (count > (int64_t{1} << 20))
  for (int64_t i = 0; i < count; ++i) out[i] = normalised[pixels[i]];
  return dataset;
}

}  // namespace syncbn::data
