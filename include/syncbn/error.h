#pragma once
// One exception type for every user-actionable failure, and the checking helpers around it.
#include <sstream>
#include <stdexcept>
#include <string>

namespace syncbn {

// A failure with a message a user can act on. Caught once at the top of each program.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] void throw_error(const std::string& message, const char* file, int line);

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace syncbn

// SYNCBN_CHECK(cond, "message parts", ...) throws syncbn::Error naming the place when cond is
// false.
#define SYNCBN_CHECK(cond, ...)                                                                 \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::syncbn::detail::throw_error(::syncbn::detail::concat(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

#define SYNCBN_FAIL(...) \
  ::syncbn::detail::throw_error(::syncbn::detail::concat(__VA_ARGS__), __FILE__, __LINE__)
