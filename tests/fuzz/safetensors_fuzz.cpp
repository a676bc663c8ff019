// Fuzzes the safetensors reader (load_safetensors). A syncbn::Error is a clean rejection; any
// other exception, a crash, a sanitizer report or a timeout is a bug.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "input_file.h"
#include "syncbn/error.h"
#include "syncbn/train/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static syncbn::fuzz::InputFile file;
  const std::string& path = file.hold(data, size);
  try {
    std::map<std::string, std::string> metadata;
    const syncbn::train::NamedTensors tensors = syncbn::train::load_safetensors(path, &metadata);
    // Every accepted tensor lies inside the file: its bytes cannot exceed the input's size.
    std::size_t bytes = 0;
    for (const auto& [name, tensor] : tensors) bytes += static_cast<std::size_t>(tensor.numel());
    if (bytes > size) std::abort();
  } catch (const syncbn::Error&) {
  }
  return 0;
}
