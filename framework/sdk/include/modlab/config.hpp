#pragma once
/// @file config.hpp
/// Typed, read-only view of one table of a sweep file. No TOML library types are visible here:
/// the host converts the parsed file into `Value` trees that remember where each value came from.

#include <modlab/export.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace modlab {

/// Where a value was written: file, 1-based line and column (0 when it did not come from a file,
/// e.g. a `--set` override, in which case `file` says so).
struct MODLAB_API SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
  /// "file:line:column", or just "file" when line is 0.
  std::string str() const;
};

/// The type of a config value, also used by plugins to declare their keys.
enum class ValueType { Null, Bool, Int, Float, String, Array, Table };

/// Human-readable name of a ValueType ("integer", "float", "table", ...).
MODLAB_API const char* type_name(ValueType t);

/// One node of a parsed config tree: a scalar, an array or a table. Immutable once built.
class MODLAB_API Value {
 public:
  using Array = std::vector<Value>;
  using Table = std::map<std::string, Value>;  // sorted: iteration order is canonical

  Value();  ///< Null
  static Value boolean(bool v, SourceLocation loc = {});
  static Value integer(std::int64_t v, SourceLocation loc = {});
  static Value floating(double v, SourceLocation loc = {});
  static Value string(std::string v, SourceLocation loc = {});
  static Value array(Array v, SourceLocation loc = {});
  static Value table(Table v, SourceLocation loc = {});

  ValueType type() const { return type_; }
  const SourceLocation& where() const { return loc_; }
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_float() const;  ///< also accepts an integer
  const std::string& as_string() const;
  const Array& as_array() const;
  const Table& as_table() const;

  /// Inline TOML literal of this value (scalars and arrays), e.g. `[1, 2]` or `"abc"`.
  std::string literal() const;

  /// Structural equality (locations ignored).
  bool operator==(const Value& o) const;
  bool operator!=(const Value& o) const { return !(*this == o); }

 private:
  ValueType type_ = ValueType::Null;
  bool b_ = false;
  std::int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Table> t_;
  SourceLocation loc_;
};

/// Told of every key a Config reads (the host uses it to report keys a plugin set but never read).
class MODLAB_API ReadObserver {
 public:
  virtual ~ReadObserver();
  virtual void read(const std::string& dotted_key) = 0;
};

/// Read-only view of one table, e.g. the `[model]` table of one run.
///
/// `get<T>(key)` accepts dotted keys ("optimizer.lr"). Supported T: bool, int, std::int64_t,
/// double, float, std::string, std::vector<std::int64_t>, std::vector<int>, std::vector<double>,
/// std::vector<std::string>, std::vector<std::vector<std::int64_t>>, Config (a sub-table).
/// Errors are ConfigError naming the dotted key, expected and found type, and file:line.
class MODLAB_API Config {
 public:
  Config();  ///< an empty table with no origin
  Config(std::shared_ptr<const Value> table, std::string prefix, std::shared_ptr<ReadObserver> observer = nullptr);

  template <class T>
  T get(const std::string& key) const;

  template <class T>
  T get_or(const std::string& key, const T& fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }

  bool has(const std::string& key) const;
  /// The raw value or nullptr; tells the observer the key was read.
  const Value* find(const std::string& key) const;
  /// Direct child keys of this table, sorted.
  std::vector<std::string> keys() const;
  /// Sub-table view ("model.gate" → Config with prefix "model.gate"). Missing key → empty table.
  Config sub(const std::string& key) const;
  /// Dotted path of this table inside the run config ("model"), "" for the root.
  const std::string& prefix() const { return prefix_; }
  /// Full dotted key of a child ("model.num_experts").
  std::string dotted(const std::string& key) const;
  /// Where this table was written.
  SourceLocation where() const;
  /// The underlying tree (never null).
  const Value& value() const { return *table_; }
  std::shared_ptr<const Value> shared_value() const { return table_; }

  /// Throws a ConfigError about `key` with the given message, adding the dotted key and location.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  /// Throws (through fail) unless `value`, read from `key`, is one of `choices`:
  /// `file:line:col: model.gate: expected one of "linear", "mlp", got "mpl"`.
  void check_choice(const std::string& key, const std::string& value, const std::vector<std::string>& choices) const;
  /// get_or<std::string>(key, fallback) checked against `choices` as check_choice does.
  std::string get_choice(const std::string& key, const std::string& fallback,
                         const std::vector<std::string>& choices) const;
  /// Throws (through fail) about a name that is not among `known`, suggesting the closest one:
  /// `model.target: unknown attribute 'Mael' (did you mean 'Male'?)` followed by `note`.
  [[noreturn]] void fail_unknown(const std::string& key, const std::string& what, const std::string& name,
                                 const std::vector<std::string>& known, const std::string& note = "") const;

 private:
  const Value* lookup(const std::string& key) const;
  std::shared_ptr<const Value> table_;
  std::string prefix_;
  std::shared_ptr<ReadObserver> observer_;
};

template <> MODLAB_API bool Config::get<bool>(const std::string&) const;
template <> MODLAB_API int Config::get<int>(const std::string&) const;
template <> MODLAB_API std::int64_t Config::get<std::int64_t>(const std::string&) const;
template <> MODLAB_API double Config::get<double>(const std::string&) const;
template <> MODLAB_API float Config::get<float>(const std::string&) const;
template <> MODLAB_API std::string Config::get<std::string>(const std::string&) const;
template <> MODLAB_API std::vector<std::int64_t> Config::get<std::vector<std::int64_t>>(const std::string&) const;
template <> MODLAB_API std::vector<int> Config::get<std::vector<int>>(const std::string&) const;
template <> MODLAB_API std::vector<double> Config::get<std::vector<double>>(const std::string&) const;
template <> MODLAB_API std::vector<std::string> Config::get<std::vector<std::string>>(const std::string&) const;
template <> MODLAB_API std::vector<std::vector<std::int64_t>> Config::get<std::vector<std::vector<std::int64_t>>>(
    const std::string&) const;
template <> MODLAB_API Config Config::get<Config>(const std::string&) const;

}  // namespace modlab
