#include "syncbn/train/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "syncbn/error.h"
#include "train/posix_file.h"

namespace syncbn::train {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this build assumes a little-endian host");

namespace {

// Insertion-ordered objects: the header keeps the order the tensors were given in.
using json = nlohmann::ordered_json;

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string reason(const json::exception& e) {
  const std::string what = e.what();
  const std::size_t end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

// The header as strict JSON (RFC 8259, UTF-8). nlohmann rejects what the grammar does not
// allow; the callback rejects what the grammar lets through: a key twice in one object (the
// format forbids it, JSON leaves its meaning open) and nesting deeper than any header needs.
json parse_header(const std::string& header, const std::string& path) {
  std::vector<std::set<std::string>> keys_per_open_object;
  auto check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_open_object.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
      case json::parse_event_t::value:
        SYNCBN_CHECK(depth <= kMaxJsonDepth, path,
                     ": malformed safetensors header: nesting deeper than ", kMaxJsonDepth,
                     " levels");
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        SYNCBN_CHECK(keys_per_open_object.back().insert(key).second, path,
                     ": malformed safetensors header: duplicate key \"", key, "\"");
        break;
      }
      case json::parse_event_t::object_end:
        keys_per_open_object.pop_back();
        break;
      case json::parse_event_t::array_end:
        break;
    }
    return true;
  };
  try {
    return json::parse(header, check);
  } catch (const json::exception& e) {  // a syntax error, or a number beyond a double's range
    SYNCBN_FAIL(path, ": malformed safetensors header: ", reason(e));
  }
}

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

uint64_t to_u64(const json& value, const std::string& path, const std::string& what) {
  // Integers beyond 64 bits parse as doubles, so this also rejects those.
  SYNCBN_CHECK(value.is_number_unsigned(), path, ": malformed safetensors header: ", what,
               " must be a non-negative integer below 2^64, got ",
               value.is_number() ? value.dump() : value.type_name());
  return value.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& value, const std::string& path) {
  const std::string where = path + ": malformed safetensors header: tensor '" + name + "'";
  SYNCBN_CHECK(value.is_object(), where, " must be an object, got ", value.type_name());
  for (const auto& [key, field] : value.items()) {
    SYNCBN_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", where,
                 " has unknown field \"", key, "\" (expected dtype, shape and data_offsets)");
  }
  SYNCBN_CHECK(value.contains("dtype") && value.contains("shape") && value.contains("data_offsets"),
               where, " lacks ",
               !value.contains("dtype")   ? "\"dtype\""
               : !value.contains("shape") ? "\"shape\""
                                          : "\"data_offsets\"");
  const json& dtype = value.at("dtype");
  const json& shape = value.at("shape");
  const json& offsets = value.at("data_offsets");
  SYNCBN_CHECK(dtype.is_string(), where, ": dtype must be a string");
  SYNCBN_CHECK(shape.is_array(), where, ": shape must be an array");
  SYNCBN_CHECK(offsets.is_array() && offsets.size() == 2, where,
               ": data_offsets must be an array [begin, end]");

  Entry entry;
  entry.name = name;
  entry.dtype = dtype.get<std::string>();
  const DtypeInfo* info = nullptr;
  for (const auto& candidate : kDtypes) {
    if (entry.dtype == candidate.name) info = &candidate;
  }
  SYNCBN_CHECK(info && info->supported, path, ": tensor '", name, "' has unsupported dtype '",
               entry.dtype, "' (supported: F32, F64, F16, BF16, I64, I32)");
  entry.element_bytes = info->bytes;

  // Tensor multiplies the dimensions in int64_t, in order: every partial product must fit
  // (shape [2^62, 3, 0] holds no bytes, yet 2^62 * 3 overflows on the way to 0).
  uint64_t numel = 1;
  for (const json& dim : shape) {
    const uint64_t size = to_u64(dim, path, "a dimension of tensor '" + name + "'");
    SYNCBN_CHECK(size <= static_cast<uint64_t>(INT64_MAX) &&
                     !__builtin_mul_overflow(numel, size, &numel) &&
                     numel <= static_cast<uint64_t>(INT64_MAX),
                 where, ": shape overflows 64 bits");
    entry.shape.push_back(static_cast<int64_t>(size));
  }
  entry.begin = to_u64(offsets[0], path, "data_offsets of tensor '" + name + "'");
  entry.end = to_u64(offsets[1], path, "data_offsets of tensor '" + name + "'");
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

// The header JSON for save_safetensors: "__metadata__" first, then the tensors in order, back
// to back as F32.
std::string header_json(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * sizeof(float);
    header[name] = {
        {"dtype", "F32"}, {"shape", tensor.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  try {
    return header.dump();
  } catch (const json::exception& e) {  // a name or metadata that is not valid UTF-8
    SYNCBN_FAIL(path, ": cannot write the safetensors header: ", reason(e));
  }
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata,
                      const std::string& temp_path) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    SYNCBN_CHECK(!name.empty() && name != "__metadata__", path, ": invalid tensor name '", name,
                 "' (names must be non-empty and not __metadata__)");
    SYNCBN_CHECK(names.insert(name).second, path, ": tensor name '", name, "' appears twice");
    SYNCBN_CHECK(tensor.defined(), path, ": tensor '", name, "' is undefined");
  }

  std::string header = header_json(path, tensors, metadata);
  // Pad so the data section starts 8-byte aligned (8 + header length is a multiple of 8).
  header.append((8 - header.size() % 8) % 8, ' ');
  SYNCBN_CHECK(header.size() <= kMaxHeaderBytes, path, ": safetensors header of ", header.size(),
               " bytes exceeds the format's limit of ", kMaxHeaderBytes);

  TempFile file(temp_path.empty() ? path + ".tmp" : temp_path);
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
  const json root = parse_header(header, path);
  SYNCBN_CHECK(root.is_object(), path,
               ": malformed safetensors header: expected a JSON object, got ", root.type_name());

  const uint64_t data_start = 8 + header_length;
  const uint64_t data_bytes = file.size() - data_start;
  std::vector<Entry> entries;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      SYNCBN_CHECK(value.is_object(), path,
                   ": malformed safetensors header: __metadata__ must be an object of strings");
      for (const auto& [name, text] : value.items()) {
        SYNCBN_CHECK(text.is_string(), path,
                     ": malformed safetensors header: __metadata__ value of \"", name,
                     "\" must be a string, got ", text.type_name());
        if (metadata) (*metadata)[name] = text.get<std::string>();
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

}  // namespace syncbn::train
