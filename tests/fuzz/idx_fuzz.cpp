// Fuzzes the IDX reader (read_idx) over raw and gzip input. A syncbn::Error is a clean
// rejection; any other exception, a crash, a sanitizer report or a timeout is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "input_file.h"
#include "syncbn/data/idx.h"
#include "syncbn/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static syncbn::fuzz::InputFile file;
  const std::string& path = file.hold(data, size);
  try {
    const syncbn::data::IdxArray array = syncbn::data::read_idx(path);
    // What the reader accepted must agree with itself: prod(dims) bytes of data.
    int64_t numel = 1;
    for (const int64_t dim : array.dims) numel *= dim;
    if (array.dims.empty() || numel != array.numel()) std::abort();
  } catch (const syncbn::Error&) {
  }
  return 0;
}
