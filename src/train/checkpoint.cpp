#include "syncbn/train/checkpoint.h"

#include <zlib.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <string_view>

#include "syncbn/error.h"

namespace syncbn::train {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this build assumes a little-endian host");

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;

// ---------------------------------------------------------------------------------------------
// A small strict JSON (RFC 8259) parser: enough for the safetensors header, nothing lenient.

struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;               // a string's value, or a number's token as written
  std::vector<Json> items;        // array elements, or object values
  std::vector<std::string> keys;  // object keys, parallel to items
};

const char* type_name(Json::Type type) {
  switch (type) {
    case Json::Type::kNull:
      return "null";
    case Json::Type::kBool:
      return "a boolean";
    case Json::Type::kNumber:
      return "a number";
    case Json::Type::kString:
      return "a string";
    case Json::Type::kArray:
      return "an array";
    case Json::Type::kObject:
      return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& path) : text_(text), path_(path) {}

  Json parse_document() {
    skip_whitespace();
    Json value = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail("unexpected characters after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    SYNCBN_FAIL(path_, ": malformed safetensors header (bad JSON at byte ", pos_,
                " of the header): ", what);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  void skip_whitespace() {
    while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                         text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  void expect_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }

  Json parse_value(int depth) {
    if (depth > kMaxJsonDepth) fail("nesting deeper than 64 levels");
    Json value;
    switch (peek()) {
      case '{':
        return parse_object(depth);
      case '[':
        return parse_array(depth);
      case '"':
        value.type = Json::Type::kString;
        value.text = parse_string();
        return value;
      case 't':
        expect_word("true");
        value.type = Json::Type::kBool;
        value.boolean = true;
        return value;
      case 'f':
        expect_word("false");
        value.type = Json::Type::kBool;
        return value;
      case 'n':
        expect_word("null");
        return value;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
        fail(at_end() ? "unexpected end of header" : "expected a value");
    }
  }

  Json parse_object(int depth) {
    Json object;
    object.type = Json::Type::kObject;
    expect('{');
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return object;
    }
    std::set<std::string> seen;
    while (true) {
      skip_whitespace();
      if (peek() != '"') fail("expected a string key");
      std::string key = parse_string();
      if (!seen.insert(key).second) fail("duplicate key \"" + key + "\"");
      skip_whitespace();
      expect(':');
      skip_whitespace();
      object.items.push_back(parse_value(depth + 1));
      object.keys.push_back(std::move(key));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return object;
    }
  }

  Json parse_array(int depth) {
    Json array;
    array.type = Json::Type::kArray;
    expect('[');
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return array;
    }
    while (true) {
      skip_whitespace();
      array.items.push_back(parse_value(depth + 1));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return array;
    }
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, kept as text.
  Json parse_number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t first = pos_;
      while (peek() >= '0' && peek() <= '9') ++pos_;
      if (pos_ == first) fail("expected a digit");
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (peek() == '.') {
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    Json number;
    number.type = Json::Type::kNumber;
    number.text = std::string(text_.substr(start, pos_ - start));
    return number;
  }

  unsigned parse_hex4() {
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = peek();
      value <<= 4;
      if (c >= '0' && c <= '9') {
        value |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        value |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        value |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("invalid \\u escape");
      }
      ++pos_;
    }
    return value;
  }

  static void append_utf8(std::string& out, unsigned code_point) {
    if (code_point < 0x80) {
      out += static_cast<char>(code_point);
    } else if (code_point < 0x800) {
      out += static_cast<char>(0xC0 | (code_point >> 6));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    } else if (code_point < 0x10000) {
      out += static_cast<char>(0xE0 | (code_point >> 12));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code_point >> 18));
      out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code_point & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char escape = peek();
      ++pos_;
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          out += escape;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned code_point = parse_hex4();
          if (code_point >= 0xD800 && code_point < 0xDC00) {
            // A high surrogate must be followed by an escaped low surrogate.
            if (text_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            const unsigned low = parse_hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("unpaired surrogate in \\u escape");
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
          } else if (code_point >= 0xDC00 && code_point < 0xE000) {
            fail("unpaired surrogate in \\u escape");
          }
          append_utf8(out, code_point);
          break;
        }
        default:
          fail("invalid escape sequence");
      }
    }
  }

  std::string_view text_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

// Index of the first byte that is not part of well-formed UTF-8, or npos.
std::size_t first_invalid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length;
    unsigned code_point;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return i;
    }
    if (i + length > text.size()) return i;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    const unsigned min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < min_for_length[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point < 0xE000)) {
      return i;  // overlong encoding, beyond Unicode, or a surrogate
    }
    i += length;
  }
  return std::string_view::npos;
}

void append_json_string(std::string& out, const std::string& text) {
  out += '"';
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// ---------------------------------------------------------------------------------------------
// File I/O with errors that name the path.

[[noreturn]] void fail_io(const std::string& path, const std::string& action) {
  SYNCBN_FAIL(path, ": cannot ", action, ": ", std::strerror(errno));
}

// Closes the descriptor and removes the temporary file unless released: no stray .tmp files.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_io(path_, "create the file");
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, std::size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t written = ::write(fd_, p, bytes);
      if (written < 0) {
        if (errno == EINTR) continue;
        fail_io(path_, "write");
      }
      p += written;
      bytes -= static_cast<std::size_t>(written);
    }
  }

  // fsync, close and rename over `target`; then fsync the directory so the rename is durable.
  void commit(const std::string& target) {
    if (::fsync(fd_) != 0) fail_io(path_, "fsync");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail_io(path_, "close");
    if (::rename(path_.c_str(), target.c_str()) != 0) {
      SYNCBN_FAIL(target, ": cannot replace it with ", path_, ": ", std::strerror(errno));
    }
    committed_ = true;
    const std::size_t slash = target.find_last_of('/');
    const std::string directory = slash == std::string::npos ? "." : target.substr(0, slash + 1);
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);  // best effort: some file systems do not support it on directories
      ::close(dir_fd);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail_io(path_, "open checkpoint");
    struct stat info;
    if (::fstat(fd_, &info) != 0) fail_io(path_, "stat");
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }

  void read_at(uint64_t offset, void* data, std::size_t bytes) {
    char* p = static_cast<char*>(data);
    while (bytes > 0) {
      const ssize_t got = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        fail_io(path_, "read");
      }
      SYNCBN_CHECK(got > 0, path_, ": file ended while reading (truncated?)");
      p += got;
      offset += static_cast<uint64_t>(got);
      bytes -= static_cast<std::size_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Header entries.

struct DtypeInfo {
  const char* name;
  uint64_t bytes;
  bool supported;  // convertible to float32
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", 4, true},   {"F64", 8, true},      {"F16", 2, true},      {"BF16", 2, true},
    {"I64", 8, true},   {"I32", 4, true},      {"I16", 2, false},     {"I8", 1, false},
    {"U8", 1, false},   {"U16", 2, false},     {"U32", 4, false},     {"U64", 8, false},
    {"BOOL", 1, false}, {"F8_E4M3", 1, false}, {"F8_E5M2", 1, false},
};

struct Entry {
  std::string name;
  std::string dtype;
  uint64_t element_bytes = 0;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

uint64_t to_u64(const Json& value, const std::string& path, const std::string& what) {
  const bool digits_only = value.type == Json::Type::kNumber && !value.text.empty() &&
                           value.text.find_first_not_of("0123456789") == std::string::npos;
  SYNCBN_CHECK(digits_only, path, ": malformed safetensors header: ", what,
               " must be a non-negative integer, got ",
               value.type == Json::Type::kNumber ? value.text : type_name(value.type));
  uint64_t result = 0;
  for (const char c : value.text) {
    const auto digit = static_cast<uint64_t>(c - '0');
    SYNCBN_CHECK(result <= (UINT64_MAX - digit) / 10, path,
                 ": malformed safetensors header: ", what, " ", value.text,
                 " does not fit in 64 bits");
    result = result * 10 + digit;
  }
  return result;
}

Entry parse_entry(const std::string& name, const Json& value, const std::string& path) {
  const std::string where = path + ": malformed safetensors header: tensor '" + name + "'";
  SYNCBN_CHECK(value.type == Json::Type::kObject, where, " must be an object, got ",
               type_name(value.type));
  const Json* dtype = nullptr;
  const Json* shape = nullptr;
  const Json* offsets = nullptr;
  for (std::size_t i = 0; i < value.keys.size(); ++i) {
    const std::string& key = value.keys[i];
    if (key == "dtype") {
      dtype = &value.items[i];
    } else if (key == "shape") {
      shape = &value.items[i];
    } else if (key == "data_offsets") {
      offsets = &value.items[i];
    } else {
      SYNCBN_FAIL(where, " has unknown field \"", key,
                  "\" (expected dtype, shape and data_offsets)");
    }
  }
  SYNCBN_CHECK(dtype && shape && offsets, where, " lacks ",
               !dtype   ? "\"dtype\""
               : !shape ? "\"shape\""
                        : "\"data_offsets\"");
  SYNCBN_CHECK(dtype->type == Json::Type::kString, where, ": dtype must be a string");
  SYNCBN_CHECK(shape->type == Json::Type::kArray, where, ": shape must be an array");
  SYNCBN_CHECK(offsets->type == Json::Type::kArray && offsets->items.size() == 2, where,
               ": data_offsets must be an array [begin, end]");

  Entry entry;
  entry.name = name;
  entry.dtype = dtype->text;
  const DtypeInfo* info = nullptr;
  for (const auto& candidate : kDtypes) {
    if (entry.dtype == candidate.name) info = &candidate;
  }
  SYNCBN_CHECK(info && info->supported, path, ": tensor '", name, "' has unsupported dtype '",
               entry.dtype, "' (supported: F32, F64, F16, BF16, I64, I32)");
  entry.element_bytes = info->bytes;

  uint64_t numel = 1;
  for (const Json& dim : shape->items) {
    const uint64_t size = to_u64(dim, path, "a dimension of tensor '" + name + "'");
    SYNCBN_CHECK(
        size <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, size, &numel),
        where, ": shape overflows 64 bits");
    entry.shape.push_back(static_cast<int64_t>(size));
  }
  entry.begin = to_u64(offsets->items[0], path, "data_offsets of tensor '" + name + "'");
  entry.end = to_u64(offsets->items[1], path, "data_offsets of tensor '" + name + "'");
  uint64_t bytes = 0;
  SYNCBN_CHECK(!__builtin_mul_overflow(numel, entry.element_bytes, &bytes), where,
               ": shape overflows 64 bits");
  SYNCBN_CHECK(entry.begin <= entry.end && entry.end - entry.begin == bytes, where,
               ": data_offsets [", entry.begin, ", ", entry.end, "] do not hold ", numel, " ",
               entry.dtype, " values (", bytes, " bytes) of shape ", shape_str(entry.shape));
  return entry;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000 | (mantissa << 13);  // inf or nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise the mantissa.
    int shift = 0;
    while (!(mantissa & 0x400)) {
      mantissa <<= 1;
      ++shift;
    }
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

// Reads `count` little-endian values of type T at `src` and stores convert(value) as floats.
template <class T, class Convert>
void convert_values(const char* src, uint64_t count, float* dst, Convert convert) {
  for (uint64_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, src + i * sizeof(T), sizeof(T));
    dst[i] = convert(value);
  }
}

// Converts `count` values of a supported non-F32 dtype into floats.
void convert_to_float(const std::string& dtype, const char* src, uint64_t count, float* dst) {
  auto cast = [](auto value) { return static_cast<float>(value); };
  if (dtype == "F64") {
    convert_values<double>(src, count, dst, cast);
  } else if (dtype == "I64") {
    convert_values<int64_t>(src, count, dst, cast);
  } else if (dtype == "I32") {
    convert_values<int32_t>(src, count, dst, cast);
  } else if (dtype == "F16") {
    convert_values<uint16_t>(src, count, dst, half_to_float);
  } else if (dtype == "BF16") {
    // bfloat16 is the upper half of a float32.
    convert_values<uint16_t>(src, count, dst, [](uint16_t bits) {
      return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
    });
  } else {
    SYNCBN_FAIL("convert_to_float: unexpected dtype ", dtype);
  }
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    SYNCBN_CHECK(!name.empty() && name != "__metadata__", path, ": invalid tensor name '", name,
                 "' (names must be non-empty and not __metadata__)");
    SYNCBN_CHECK(names.insert(name).second, path, ": tensor name '", name, "' appears twice");
    SYNCBN_CHECK(tensor.defined(), path, ": tensor '", name, "' is undefined");
  }

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, key);
      header += ':';
      append_json_string(header, value);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (header.size() > 1) header += ',';
    append_json_string(header, name);
    header += ":{\"dtype\":\"F32\",\"shape\":[";
    for (int d = 0; d < tensor.ndim(); ++d) {
      if (d > 0) header += ',';
      header += std::to_string(tensor.shape()[d]);
    }
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * sizeof(float);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += '}';
  // Pad so the data section starts 8-byte aligned (8 + header length is a multiple of 8).
  header.append((8 - header.size() % 8) % 8, ' ');
  SYNCBN_CHECK(header.size() <= kMaxHeaderBytes, path, ": safetensors header of ", header.size(),
               " bytes exceeds the format's limit of ", kMaxHeaderBytes);

  TempFile file(path + ".tmp");
  const uint64_t header_length = header.size();  // little-endian on this host (asserted above)
  file.write(&header_length, sizeof(header_length));
  file.write(header.data(), header.size());
  for (const auto& [name, tensor] : tensors) {
    const std::size_t bytes = static_cast<std::size_t>(tensor.numel()) * sizeof(float);
    if (tensor.device().is_cpu()) {
      file.write(tensor.data(), bytes);
    } else {
      const std::vector<float> host = tensor.to_vector();
      file.write(host.data(), bytes);
    }
  }
  file.commit(path);
}

NamedTensors load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata) {
  InputFile file(path);
  SYNCBN_CHECK(file.size() >= 8, path, ": truncated safetensors file: ", file.size(),
               " bytes, shorter than the 8-byte header length");
  uint64_t header_length = 0;
  file.read_at(0, &header_length, sizeof(header_length));
  SYNCBN_CHECK(header_length <= file.size() - 8, path, ": safetensors header length ",
               header_length, " goes beyond the end of the file (", file.size(), " bytes)");
  SYNCBN_CHECK(header_length <= kMaxHeaderBytes, path, ": safetensors header length ",
               header_length, " exceeds the format's limit of ", kMaxHeaderBytes);
  std::string header(static_cast<std::size_t>(header_length), '\0');
  file.read_at(8, header.data(), header.size());
  const std::size_t bad_byte = first_invalid_utf8(header);
  SYNCBN_CHECK(bad_byte == std::string_view::npos, path,
               ": malformed safetensors header: invalid UTF-8 at byte ", bad_byte);
  const Json root = JsonParser(header, path).parse_document();
  SYNCBN_CHECK(root.type == Json::Type::kObject, path,
               ": malformed safetensors header: expected a JSON object, got ",
               type_name(root.type));

  const uint64_t data_start = 8 + header_length;
  const uint64_t data_bytes = file.size() - data_start;
  std::vector<Entry> entries;
  for (std::size_t i = 0; i < root.keys.size(); ++i) {
    const std::string& key = root.keys[i];
    const Json& value = root.items[i];
    if (key == "__metadata__") {
      SYNCBN_CHECK(value.type == Json::Type::kObject, path,
                   ": malformed safetensors header: __metadata__ must be an object of strings");
      for (std::size_t k = 0; k < value.keys.size(); ++k) {
        SYNCBN_CHECK(value.items[k].type == Json::Type::kString, path,
                     ": malformed safetensors header: __metadata__ value of \"", value.keys[k],
                     "\" must be a string, got ", type_name(value.items[k].type));
        if (metadata) (*metadata)[value.keys[k]] = value.items[k].text;
      }
      continue;
    }
    Entry entry = parse_entry(key, value, path);
    SYNCBN_CHECK(entry.end <= data_bytes, path, ": tensor '", key, "' data_offsets [", entry.begin,
                 ", ", entry.end, "] lie beyond the data section of ", data_bytes,
                 " bytes (truncated file?)");
    entries.push_back(std::move(entry));
  }

  // The data section must be covered exactly once, tensors back to back (as the format requires).
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& entry = entries[i];
    SYNCBN_CHECK(entry.begin >= covered, path, ": tensors '", entries[i - 1].name, "' and '",
                 entry.name, "' overlap in the data section (bytes [", entries[i - 1].begin, ", ",
                 entries[i - 1].end, ") and [", entry.begin, ", ", entry.end, "))");
    SYNCBN_CHECK(entry.begin == covered, path, ": bytes [", covered, ", ", entry.begin,
                 ") of the data section belong to no tensor");
    covered = entry.end;
  }
  SYNCBN_CHECK(covered == data_bytes, path, ": ", data_bytes - covered,
               " bytes after the last tensor belong to no tensor");

  NamedTensors tensors;
  tensors.reserve(entries.size());
  std::vector<char> staging;
  for (const Entry& entry : entries) {
    Tensor tensor = Tensor::empty(entry.shape);
    const uint64_t bytes = entry.end - entry.begin;
    if (entry.dtype == "F32") {
      file.read_at(data_start + entry.begin, tensor.data(), static_cast<std::size_t>(bytes));
    } else {
      staging.resize(static_cast<std::size_t>(bytes));
      file.read_at(data_start + entry.begin, staging.data(), staging.size());
      convert_to_float(entry.dtype, staging.data(), static_cast<uint64_t>(tensor.numel()),
                       tensor.data());
    }
    tensors.emplace_back(entry.name, std::move(tensor));
  }
  return tensors;
}

void load_state_dict(nn::Module& module, const NamedTensors& state) {
  const auto targets = module.state_dict();
  std::map<std::string, const Tensor*> given;
  std::string duplicates, missing, unexpected;
  auto append = [](std::string& list, const std::string& name) {
    list += (list.empty() ? "" : ", ") + ("\"" + name + "\"");
  };
  for (const auto& [name, tensor] : state) {
    if (!given.emplace(name, &tensor).second) append(duplicates, name);
  }
  std::set<std::string> target_names;
  std::string mismatches;
  for (const auto& [name, target] : targets) {
    target_names.insert(name);
    const auto it = given.find(name);
    if (it == given.end()) {
      append(missing, name);
    } else if (it->second->shape() != target.shape()) {
      mismatches += "; size mismatch for " + name + ": copying a tensor of shape " +
                    shape_str(it->second->shape()) + " from the checkpoint, the shape in the " +
                    "current model is " + shape_str(target.shape());
    }
  }
  for (const auto& [name, tensor] : state) {
    if (!target_names.count(name)) append(unexpected, name);
  }
  std::string message;
  if (!duplicates.empty()) message += "; duplicate key(s): " + duplicates;
  if (!missing.empty()) message += "; missing key(s) in state_dict: " + missing;
  if (!unexpected.empty()) message += "; unexpected key(s) in state_dict: " + unexpected;
  message += mismatches;
  SYNCBN_CHECK(message.empty(), "error(s) in loading state_dict for ", module.type_name(), ": ",
               message.empty() ? message : message.substr(2));

  for (const auto& [name, target] : targets) {
    Tensor destination = target;  // shares storage with the module's parameter or buffer
    destination.copy_from(*given.at(name));
  }
}

namespace {

std::string signature_of(const NamedTensors& tensors) {
  std::string signature;
  for (const auto& [name, tensor] : tensors) signature += name + " " + shape_str(tensor.shape()) + "\n";
  return signature;
}

std::string crc32_of(const NamedTensors& tensors) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [name, tensor] : tensors) {
    const std::vector<float> values = tensor.to_vector();
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(values.data()), values.size() * sizeof(float));
  }
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc));
  return text;
}

}  // namespace

std::map<std::string, std::string> integrity_metadata(const NamedTensors& tensors) {
  return {{"signature", signature_of(tensors)}, {"crc32", crc32_of(tensors)}};
}

void verify_integrity(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata,
                      const std::string& path) {
  if (auto it = metadata.find("signature"); it != metadata.end()) {
    SYNCBN_CHECK(it->second == signature_of(tensors), path,
                 ": the tensors' names and shapes differ from the signature recorded when it was "
                 "written");
  }
  if (auto it = metadata.find("crc32"); it != metadata.end()) {
    const std::string actual = crc32_of(tensors);
    SYNCBN_CHECK(it->second == actual, path, ": checksum mismatch (recorded crc32 ", it->second,
                 ", data has ", actual, "): the file is corrupt");
  }
}

}  // namespace syncbn::train
