// Builders for config tables in plugin tests, so a test can write
//   load({{"plugin", str("toy")}, {"structure", ints({6, 3, 2, 2})}})
#pragma once

#include <modlab/config.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace test_config {

using modlab::Value;

/// A Config view of `t` as the table `prefix` ("dataset", "model").
inline modlab::Config make_config(Value::Table t, const std::string& prefix = "dataset") {
  return modlab::Config(std::make_shared<Value>(Value::table(std::move(t))), prefix);
}

inline Value str(const std::string& s) { return Value::string(s); }

inline Value ints(const std::vector<std::int64_t>& v) {
  Value::Array a;
  for (auto x : v) a.push_back(Value::integer(x));
  return Value::array(a);
}

inline Value strs(const std::vector<std::string>& v) {
  Value::Array a;
  for (const auto& x : v) a.push_back(Value::string(x));
  return Value::array(a);
}

}  // namespace test_config
