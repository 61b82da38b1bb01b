#pragma once
// Checks a plugin's table of a run config against the keys the plugin declared, before any run
// starts (and again in the worker, before the plugin's factory sees the table).

#include <modlab/errors.hpp>
#include <modlab/options.hpp>

#include <cstddef>
#include <set>
#include <string>
#include <vector>

namespace modlab::runner {

class Registry;

/// Records which dotted keys a plugin read, so keys set in a run config but never read can be
/// reported (a setting that has no effect with the rest of the config).
class AccessLog : public ReadObserver {
 public:
  void read(const std::string& dotted_key) override { read_.insert(dotted_key); }
  bool was_read(const std::string& dotted_key) const;  ///< true also if a parent or child was read
  const std::set<std::string>& keys() const { return read_; }

 private:
  std::set<std::string> read_;
};

/// Problems found while checking, each kept once in the order found, thrown together as one
/// ConfigError so that a user fixes them all in one go (as a compiler reports its errors).
class ConfigErrors {
 public:
  /// Runs `check`; a ConfigError it throws is recorded, each line of its message one problem.
  template <class F>
  void check(F&& check) {
    try {
      check();
    } catch (const ConfigError& e) {
      add(e.what());
    }
  }
  void add(const std::string& message);
  bool empty() const { return messages_.empty(); }
  /// Throws nothing when empty; one problem as it is; several as "N problems <where>:" followed by
  /// one indented line each, at most `cap` of them and then how many more.
  void throw_if_any(const std::string& where, std::size_t cap = 20) const;

 private:
  std::vector<std::string> messages_;
  std::set<std::string> seen_;
};

/// Checks every key of `table` against `keys`: unknown keys (with the closest known key suggested),
/// then each declared key's type, choices and bounds (KeySpec::check). Sub-tables are checked
/// against dotted key names; a key declared with type Table accepts any content. `reserved` names
/// are skipped (e.g. "plugin"). Every problem goes to `errors` when given; otherwise one ConfigError
/// names them all.
void validate_keys(const Config& table, const std::vector<KeySpec>& keys, const std::vector<std::string>& reserved = {},
                   ConfigErrors* errors = nullptr);

/// A model's table: validate_keys against the model's keys, then every nested model table it
/// declares (KeySpec::model_table) against the keys of the model its `plugin` key names.
void validate_model_table(const Config& table, const std::vector<KeySpec>& keys, const Registry& registry,
                          ConfigErrors* errors = nullptr);

}  // namespace modlab::runner
