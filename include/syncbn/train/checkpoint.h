#pragma once
// Checkpoints: a model's state_dict as safetensors (syncbn/train/safetensors.h), with integrity
// metadata (docs/DESIGN.md §6) so that a corrupt or mismatched file is a clear error on load.
#include <map>
#include <string>

#include "syncbn/train/safetensors.h"

namespace syncbn::train {

// Integrity metadata for save_safetensors: "signature" (nn::model_signature, one line per
// tensor, "name [shape]", as DataParallel's model check) and "crc32" (zlib's CRC-32 of the raw
// float32 data, tensors in order), both as text.
std::map<std::string, std::string> integrity_metadata(const NamedTensors& tensors);
// Throws syncbn::Error naming `path` when metadata carries a signature or a crc32 that the
// tensors do not match; files without them (written by other tools) pass.
void verify_integrity(const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata, const std::string& path);

}  // namespace syncbn::train
