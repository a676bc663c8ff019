#pragma once
// The safetensors format (https://github.com/huggingface/safetensors), which PyTorch, JAX and
// others read:
//   [8 bytes: N, little-endian u64] [N bytes: JSON header, space-padded to a multiple of 8]
//   [data: raw little-endian tensors, back to back]
// The header maps each name to {"dtype":"F32","shape":[...],"data_offsets":[begin,end]}
// (byte offsets into the data section) and may hold "__metadata__": {string: string}.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/tensor.h"

namespace syncbn::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (any devices; copied to the host) as F32 in the given order, with
// `metadata` as "__metadata__". Atomic: the bytes go to `temp_path` ("<path>.tmp" when empty),
// which is fsync'ed and renamed over `path`, so a crash leaves either the old file or the new
// one (and perhaps the temporary file). Names must be
// unique, non-empty, valid UTF-8 and not "__metadata__". I/O failures throw syncbn::Error
// naming the path.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      const std::string& temp_path = {});

// Reads a safetensors file into CPU tensors, in the order of their data offsets (which is the
// order save_safetensors was given). F32 loads as is; F64, F16, BF16, I64 and I32 are converted
// to float32 (torch stores BatchNorm's num_batches_tracked as I64). `metadata`, when given,
// receives "__metadata__". The file is validated strictly, each failure a syncbn::Error naming
// the path: truncated file, header length beyond the file, malformed JSON or UTF-8, duplicate
// keys, missing or unknown fields, unsupported dtype, byte ranges that do not match the shape,
// lie outside the data, overlap, or leave bytes of the data section uncovered.
NamedTensors load_safetensors(const std::string& path,
                              std::map<std::string, std::string>* metadata = nullptr);

}  // namespace syncbn::train
