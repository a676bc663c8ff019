#pragma once
// Number formatting shared by --help, settings checks, metrics and module descriptions.
#include <string>

namespace syncbn {

// The shortest decimal text that reads back to the same double ("0.05", not
// "0.050000000000000003"): std::to_chars without a format.
std::string shortest_repr(double value);

// A double as Python's repr writes it ("1e-05", "0.1", "1.0"), so that printed modules read
// like PyTorch's: the shortest round-trip digits, exponent notation below 1e-4 and from 1e16 on.
std::string python_float_repr(double value);

}  // namespace syncbn
