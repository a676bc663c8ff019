#include "syncbn/error.h"

#include <cstring>

namespace syncbn::detail {

void throw_error(const std::string& message, const char* file, int line) {
  // Keep the message first (what the user reads); the place follows for developers.
  const char* base = std::strrchr(file, '/');
  throw Error(message + " [" + (base ? base + 1 : file) + ":" + std::to_string(line) + "]");
}

}  // namespace syncbn::detail
