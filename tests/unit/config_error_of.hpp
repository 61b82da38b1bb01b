// The message of the ConfigError `f()` throws, or "" when it throws none (config and options tests).
#pragma once

#include <modlab/errors.hpp>

#include <string>

namespace test_config_error {

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const modlab::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace test_config_error
