#include "util/format.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace syncbn {

std::string shortest_repr(double value) {
  char buffer[64];
  return std::string(buffer, std::to_chars(buffer, buffer + sizeof buffer, value).ptr);
}

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest digits that round-trip, as Python's repr; "d[.ddd]e±XX".
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), std::fabs(value),
                                    std::chars_format::scientific);
  const std::string scientific(buffer, result.ptr);
  const std::string sign = std::signbit(value) ? "-" : "";
  const std::size_t e = scientific.find('e');
  const int exponent = std::stoi(scientific.substr(e + 1));
  // Python switches to exponent notation below 1e-4 and from 1e16 on.
  if (exponent < -4 || exponent >= 16) return sign + scientific;
  std::string digits = scientific.substr(0, e);
  if (digits.size() > 1) digits.erase(1, 1);  // drop the '.'
  std::string out;
  if (exponent < 0) {
    out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  } else {
    const std::size_t integer_digits = static_cast<std::size_t>(exponent) + 1;
    if (digits.size() <= integer_digits) {
      out = digits + std::string(integer_digits - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
    }
  }
  return sign + out;
}

std::string quote_brief(std::string_view text, std::size_t max_chars) {
  std::string out = "'";
  std::size_t shown = 0;
  for (; shown < text.size(); ++shown) {
    const auto byte = static_cast<unsigned char>(text[shown]);
    char piece[8] = {static_cast<char>(byte), 0};
    if (byte < 0x20 || byte >= 0x7F || byte == '\\') {
      std::snprintf(piece, sizeof piece, "\\x%02X", byte);
    }
    if (out.size() - 1 + std::strlen(piece) > max_chars) break;
    out += piece;
  }
  if (shown == text.size()) return out + "'";
  return out + "...' (" + std::to_string(text.size()) + " bytes)";
}

std::string byte_size_str(double bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(static_cast<long long>(bytes)) + " bytes";
  int unit = -1;
  while (bytes >= 1024 && unit < 5) {
    bytes /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g %s", bytes, kUnits[unit]);
  return buffer;
}

}  // namespace syncbn
