#include "syncbn/train/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "syncbn/error.h"

namespace syncbn::train {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "syncbn_safetensors_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return out;
}

template <class T>
std::string raw(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A safetensors file built by hand: length prefix, header, data.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// Expects load_safetensors(path) to throw an Error whose message names the path and `phrase`.
void expect_load_error(const std::string& path, const std::string& phrase) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << "loaded a malformed file; expected an error containing '" << phrase << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(phrase), std::string::npos) << message;
  }
}

TEST_F(SafetensorsTest, RoundTripKeepsNamesOrderShapesValuesAndMetadata) {
  const NamedTensors saved = {
      {"layer1.0.conv1.weight",
       Tensor::from_vector({2, 1, 2, 2}, {1, -2, 3.5f, 4, 5, 6, 7, 8e-8f})},
      {"bn.num_batches_tracked", Tensor::from_vector({}, {12.0f})},  // 0-d
      {"bn.running_mean", Tensor::from_vector({1}, {-0.125f})},
      {"empty", Tensor::zeros({0, 3})},
      {"fc.bias", Tensor::from_vector({3}, {1e30f, -0.0f, 3.14159f})},
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"note", "quote \" backslash \\ newline \n tab \t ctrl \x01 utf8 \xC3\xA9"}};
  save_safetensors(path("model.safetensors"), saved, metadata);

  std::map<std::string, std::string> loaded_metadata;
  const NamedTensors loaded = load_safetensors(path("model.safetensors"), &loaded_metadata);
  EXPECT_EQ(loaded_metadata, metadata);
  ASSERT_EQ(loaded.size(), saved.size());
  for (std::size_t i = 0; i < saved.size(); ++i) {
    EXPECT_EQ(loaded[i].first, saved[i].first);
    EXPECT_EQ(loaded[i].second.shape(), saved[i].second.shape()) << saved[i].first;
    EXPECT_EQ(loaded[i].second.to_vector(), saved[i].second.to_vector()) << saved[i].first;
    EXPECT_TRUE(loaded[i].second.device().is_cpu());
  }
}

TEST_F(SafetensorsTest, HeaderLayoutFollowsTheSpecByteForByte) {
  const std::vector<float> a = {1.5f, -2.0f};
  const std::vector<float> b = {0.25f};
  save_safetensors(path("x.safetensors"),
                   {{"a", Tensor::from_vector({2}, a)}, {"b", Tensor::from_vector({}, b)}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(path("x.safetensors"));
  ASSERT_GE(bytes.size(), 8u);

  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i)
    header_length = (header_length << 8) | static_cast<uint8_t>(bytes[i]);
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}})";
  // The header is the JSON padded with spaces so the data starts at a multiple of 8.
  EXPECT_EQ((8 + header_length) % 8, 0u);
  EXPECT_LT(header_length - json.size(), 8u);
  const std::string header = bytes.substr(8, header_length);
  EXPECT_EQ(header, json + std::string(header_length - json.size(), ' '));
  EXPECT_EQ(bytes.size(), 8 + header_length + 12);
  EXPECT_EQ(bytes.substr(8 + header_length), raw(a) + raw(b));
}

TEST_F(SafetensorsTest, TruncatedFileIsAnError) {
  write_bytes(path("short"), std::string("\x10\x00\x00\x00", 4));
  expect_load_error(path("short"), "truncated");
  write_bytes(path("none"), "");
  expect_load_error(path("none"), "truncated");
}

TEST_F(SafetensorsTest, EveryTruncationOfAValidFileIsAnError) {
  save_safetensors(path("full"),
                   {{"a", Tensor::from_vector({2}, {1, 2})}, {"b", Tensor::zeros({})}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(path("full"));
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    write_bytes(path("cut"), bytes.substr(0, length));
    EXPECT_THROW(load_safetensors(path("cut")), Error) << "prefix of " << length << " bytes";
  }
  // The JSON itself cut short, with a length prefix that matches: every proper prefix of a JSON
  // object is malformed.
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  std::string json = bytes.substr(8, header_length);
  json.erase(json.find_last_not_of(' ') + 1);
  for (std::size_t length = 0; length < json.size(); ++length) {
    write_bytes(path("cut"), safetensors_bytes(json.substr(0, length), ""));
    expect_load_error(path("cut"), "malformed safetensors header");
  }
}

TEST_F(SafetensorsTest, HeaderLengthBeyondTheFileIsAnError) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
  write_bytes(path("f"), u64_le(1000) + header + raw(std::vector<float>{1}));
  expect_load_error(path("f"), "beyond the end of the file");
  write_bytes(path("g"), u64_le(UINT64_MAX) + header);
  expect_load_error(path("g"), "beyond the end of the file");
}

TEST_F(SafetensorsTest, BadJsonIsAnError) {
  const std::string data = raw(std::vector<float>{1});
  const std::vector<std::string> bad_headers = {
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]})",     // unclosed
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],}})",   // trailing comma
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} x)",  // garbage after
      R"({a:{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",      // unquoted key
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
      R"({"a":{"dtype":'F32',"shape":[],"data_offsets":[0,4]}})",        // single quotes
      R"({"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}})",      // leading zero
      std::string("{\"a\xff\":{}}"),                                     // invalid UTF-8
      std::string("{\"a\xc0\xaf\":{}}"),                                 // overlong UTF-8
      std::string("{\"a\xed\xa0\x80\":{}}"),                             // UTF-8 surrogate
      R"({"a\ud800":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",  // lone surrogate
      std::string("{\"a\x01\":{}}"),                                     // control character
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} // comment)",
      "{\"a\":" + std::string(65, '[') + std::string(65, ']') + "}",  // nested too deep
  };
  for (std::size_t i = 0; i < bad_headers.size(); ++i) {
    const std::string file = path("bad" + std::to_string(i));
    write_bytes(file, safetensors_bytes(bad_headers[i], data));
    SCOPED_TRACE(bad_headers[i]);
    expect_load_error(file, "malformed safetensors header");
  }
}

TEST_F(SafetensorsTest, DuplicateKeysAreAnErrorAtAnyLevel) {
  const std::string data = raw(std::vector<float>{1});
  const std::string tensor = R"({"dtype":"F32","shape":[],"data_offsets":[0,4]})";
  write_bytes(path("top"),
              safetensors_bytes(R"({"a":)" + tensor + R"(,"a":)" + tensor + "}", data));
  expect_load_error(path("top"), "duplicate key \"a\"");
  write_bytes(path("inner"), safetensors_bytes(R"({"a":{"dtype":"F32","dtype":"F32","shape":[],)"
                                               R"("data_offsets":[0,4]}})",
                                               data));
  expect_load_error(path("inner"), "duplicate key \"dtype\"");
  write_bytes(path("meta"),
              safetensors_bytes(R"({"__metadata__":{"k":"1","k":"2"},"a":)" + tensor + "}", data));
  expect_load_error(path("meta"), "duplicate key \"k\"");
}

TEST_F(SafetensorsTest, WrongHeaderStructureIsAnError) {
  const std::string data = raw(std::vector<float>{1});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([1,2])", "expected a JSON object"},
      {R"({"a":{"dtype":"F32","shape":[]}})", "lacks \"data_offsets\""},
      {R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":1}})", "unknown field"},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", "non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}})", "non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,18446744073709551616]}})",
       "non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", "non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "do not hold 2 F32 values"},
      {R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
       "must be a string"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string file = path("case" + std::to_string(i));
    write_bytes(file, safetensors_bytes(cases[i].first, data));
    SCOPED_TRACE(cases[i].first);
    expect_load_error(file, cases[i].second);
  }
}

TEST_F(SafetensorsTest, UnsupportedDtypeIsAnError) {
  write_bytes(path("i8"),
              safetensors_bytes(R"({"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})",
                                std::string(4, '\x01')));
  expect_load_error(path("i8"), "unsupported dtype 'I8'");
  write_bytes(path("q"),
              safetensors_bytes(R"({"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}})",
                                std::string(4, '\x01')));
  expect_load_error(path("q"), "unsupported dtype 'Q7'");
}

TEST_F(SafetensorsTest, OffsetsBeyondTheDataAreAnError) {
  write_bytes(path("f"),
              safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                raw(std::vector<float>{1})));
  expect_load_error(path("f"), "beyond the data section");
}

TEST_F(SafetensorsTest, OverlappingOffsetsAreAnError) {
  write_bytes(path("f"),
              safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                raw(std::vector<float>{1, 2, 3})));
  expect_load_error(path("f"), "overlap");
}

TEST_F(SafetensorsTest, UncoveredDataBytesAreAnError) {
  // A gap between tensors, and bytes after the last one: the format requires neither.
  write_bytes(path("gap"),
              safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                raw(std::vector<float>{1, 2, 3})));
  expect_load_error(path("gap"), "belong to no tensor");
  write_bytes(path("tail"),
              safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                raw(std::vector<float>{1, 2})));
  expect_load_error(path("tail"), "belong to no tensor");
}

TEST_F(SafetensorsTest, MissingFileIsAnErrorNamingThePath) {
  expect_load_error(path("does-not-exist"), "cannot open");
}

TEST_F(SafetensorsTest, OtherDtypesConvertToFloat32) {
  // Written by hand (torch would write BatchNorm's num_batches_tracked as I64, fp16 weights...).
  const std::string header = R"({"f64":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                             R"("i64":{"dtype":"I64","shape":[],"data_offsets":[16,24]},)"
                             R"("i32":{"dtype":"I32","shape":[2],"data_offsets":[24,32]},)"
                             R"("f16":{"dtype":"F16","shape":[5],"data_offsets":[32,42]},)"
                             R"("bf16":{"dtype":"BF16","shape":[2],"data_offsets":[42,46]}})";
  // F16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF, 2^-24 (smallest subnormal) = 0x0001,
  // 2^-15 (a subnormal) = 0x0200. BF16: 1.0 = 0x3F80, -3.0 = 0xC040.
  const std::string data = raw(std::vector<double>{0.1, -1e10}) +
                           raw(std::vector<int64_t>{1234567}) + raw(std::vector<int32_t>{-5, 77}) +
                           raw(std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0200}) +
                           raw(std::vector<uint16_t>{0x3F80, 0xC040});
  write_bytes(path("mixed"), safetensors_bytes(header, data));
  const NamedTensors loaded = load_safetensors(path("mixed"));
  ASSERT_EQ(loaded.size(), 5u);
  EXPECT_EQ(loaded[0].second.to_vector(), (std::vector<float>{0.1f, -1e10f}));
  EXPECT_EQ(loaded[1].second.shape(), Shape{});
  EXPECT_EQ(loaded[1].second.to_vector(), (std::vector<float>{1234567.0f}));
  EXPECT_EQ(loaded[2].second.to_vector(), (std::vector<float>{-5.0f, 77.0f}));
  EXPECT_EQ(
      loaded[3].second.to_vector(),
      (std::vector<float>{1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24), std::ldexp(1.0f, -15)}));
  EXPECT_EQ(loaded[4].second.to_vector(), (std::vector<float>{1.0f, -3.0f}));
}

TEST_F(SafetensorsTest, LoadReturnsTensorsInDataOffsetOrder) {
  // JSON key order is not meaningful; the data layout is.
  const std::string header = R"({"second":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("first":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write_bytes(path("f"), safetensors_bytes(header, raw(std::vector<float>{1, 2})));
  const NamedTensors loaded = load_safetensors(path("f"));
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded[0].first, "first");
  EXPECT_EQ(loaded[0].second.to_vector(), std::vector<float>{1});
  EXPECT_EQ(loaded[1].first, "second");
}

TEST_F(SafetensorsTest, AtomicWriteReplacesTheFileAndLeavesNoTmp) {
  const std::string file = path("ckpt.safetensors");
  save_safetensors(file, {{"w", Tensor::from_vector({1}, {1.0f})}});
  save_safetensors(file, {{"w", Tensor::from_vector({2}, {2.0f, 3.0f})}});
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  EXPECT_EQ(load_safetensors(file)[0].second.to_vector(), (std::vector<float>{2.0f, 3.0f}));
}

TEST_F(SafetensorsTest, FailedWriteNamesThePathAndLeavesNoTmp) {
  // Missing directory: the temporary file cannot be created.
  const std::string missing = path("no/such/dir/ckpt.safetensors");
  try {
    save_safetensors(missing, {{"w", Tensor::zeros({1})}});
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // The target is a non-empty directory: the rename fails after the data was written.
  const std::string target = path("occupied");
  fs::create_directories(fs::path(target) / "child");
  try {
    save_safetensors(target, {{"w", Tensor::zeros({1})}});
    ADD_FAILURE() << "renamed over a directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(target), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(target + ".tmp"));
}

TEST_F(SafetensorsTest, InvalidNamesAreRejectedBeforeWriting) {
  const std::string file = path("f");
  EXPECT_THROW(save_safetensors(file, {{"a", Tensor::zeros({1})}, {"a", Tensor::zeros({1})}}),
               Error);
  EXPECT_THROW(save_safetensors(file, {{"__metadata__", Tensor::zeros({1})}}), Error);
  EXPECT_THROW(save_safetensors(file, {{"", Tensor::zeros({1})}}), Error);
  EXPECT_THROW(save_safetensors(file, {{"undefined", Tensor()}}), Error);
  EXPECT_THROW(save_safetensors(file, {{"bad\xff", Tensor::zeros({1})}}), Error);  // not UTF-8
  EXPECT_THROW(save_safetensors(file, {{"w", Tensor::zeros({1})}}, {{"k", "\xc3"}}), Error);
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(fs::exists(file + ".tmp"));
}

TEST_F(SafetensorsTest, CudaTensorsAreSavedFromTheDevice) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const Tensor host = Tensor::from_vector({3}, {1, 2, 3});
  save_safetensors(path("gpu"), {{"w", host.to(Device::cuda(0))}});
  EXPECT_EQ(load_safetensors(path("gpu"))[0].second.to_vector(), host.to_vector());
}

}  // namespace
}  // namespace syncbn::train
