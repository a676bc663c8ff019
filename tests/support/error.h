#pragma once
// The message of the syncbn::Error a piece of code throws: for tests that pin what an error says.
#include <gtest/gtest.h>

#include <string>

#include "syncbn/error.h"

namespace syncbn::testing {

// fn's syncbn::Error message; a test failure (and "") when fn throws none.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a syncbn::Error";
  return "";
}

}  // namespace syncbn::testing
