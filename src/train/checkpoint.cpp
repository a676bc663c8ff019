#include "syncbn/train/checkpoint.h"

#include <zlib.h>

#include <cstdio>
#include <vector>

#include "syncbn/error.h"
#include "syncbn/nn/module.h"

namespace syncbn::train {

namespace {

// The signature as one text: each line of nn::model_signature followed by a newline.
std::string signature_of(const NamedTensors& tensors) {
  std::string signature;
  for (const std::string& line : nn::model_signature(tensors)) signature += line + "\n";
  return signature;
}

std::string crc32_of(const NamedTensors& tensors) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [name, tensor] : tensors) {
    const std::vector<float> values = tensor.to_vector();
    crc =
        crc32_z(crc, reinterpret_cast<const Bytef*>(values.data()), values.size() * sizeof(float));
  }
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc));
  return text;
}

}  // namespace

std::map<std::string, std::string> integrity_metadata(const NamedTensors& tensors) {
  return {{"signature", signature_of(tensors)}, {"crc32", crc32_of(tensors)}};
}

void verify_integrity(const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata, const std::string& path) {
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
