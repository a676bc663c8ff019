#pragma once
// Number formatting shared by --help, settings checks, metrics and module descriptions.
#include <cstddef>
#include <string>
#include <string_view>

namespace syncbn {

// The shortest decimal text that reads back to the same double ("0.05", not
// "0.050000000000000003"): std::to_chars without a format.
std::string shortest_repr(double value);

// A double as Python's repr writes it ("1e-05", "0.1", "1.0"), so that printed modules read
// like PyTorch's: the shortest round-trip digits, exponent notation below 1e-4 and from 1e16 on.
std::string python_float_repr(double value);

// A byte count for people: "512 bytes", "1.5 GiB", "3.6 TiB" (binary units, 2 significant
// decimals at most).
std::string byte_size_str(double bytes);

// `text` quoted for an error message: 'text', with bytes outside printable ASCII written as \xNN
// and, past max_chars, cut to "'first chars...' (N bytes)", so that a binary or huge input never
// floods the terminal.
std::string quote_brief(std::string_view text, std::size_t max_chars = 80);

}  // namespace syncbn
