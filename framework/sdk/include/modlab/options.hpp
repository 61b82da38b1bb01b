#pragma once
/// @file options.hpp
/// A plugin's options, each declared once: name, member of the plugin's options struct, one-line
/// doc and the values it accepts. The default is the member's value in a default-constructed
/// struct, so the struct, the parser and what `modlab plugins` prints cannot disagree.
///
///   struct MoeOptions { std::int64_t num_experts = 4; std::string gate = "linear"; };
///   const modlab::Options<MoeOptions>& moe_options() {
///     static const auto o = modlab::Options<MoeOptions>()
///         .key("num_experts", &MoeOptions::num_experts, "number of experts E").at_least(1)
///         .key("gate", &MoeOptions::gate, "gate network").choices({"linear", "mlp"});
///     return o;
///   }
///   MoeOptions opt = moe_options().parse(config);  // typed struct, every declared check applied
///   entry.keys = moe_options().specs();             // for `modlab plugins` and the preflight check
///
/// The same declarations are checked for every run of a sweep before the first run starts, so a
/// value out of range is reported with its file and line, not hours later in a worker. Checks that
/// involve several keys (a key valid only with some method) stay in the plugin, after parse().

#include <modlab/config.hpp>
#include <modlab/errors.hpp>
#include <modlab/export.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace modlab {

/// A config key a plugin understands, with the values it accepts. `type` Array means a list and
/// `element` says of what; a Table with `element` Float is a table of numbers. Choices and bounds
/// apply to the value, or to every element of a list (or every number of a table).
struct MODLAB_API KeySpec {
  std::string name;            ///< dotted, relative to the plugin's table ("num_experts", "gate.hidden")
  ValueType type = ValueType::Null;
  ValueType element = ValueType::Null;  ///< element type for arrays (Null = any)
  std::string default_value;   ///< TOML literal of the default, "" = required
  std::string doc;             ///< one line
  std::vector<std::string> choices;      ///< allowed strings; empty = any
  std::optional<double> min, max;        ///< numeric bounds; absent = unbounded
  bool min_open = false, max_open = false;  ///< true: the bound itself is excluded (> rather than >=)
  bool finite = false;         ///< nan and inf are rejected
  bool model_table = false;    ///< a nested model table: its `plugin` key names a model whose keys apply inside
  bool per_member = false;     ///< the members of a population may differ in it (Options::per_member)

  /// "integer", "array of integers", "table", ...
  std::string type_text() const;
  /// What the value may be, as `modlab plugins` prints it: "", ">= 1", "in [0, 1)", "finite, > 0",
  /// "linear | mlp", "each >= 1" (lists), "model table" (nested model tables).
  std::string constraint() const;
  /// Checks the value of this key in `table`, if present: type, then choices and bounds. Throws a
  /// ConfigError through Config::fail, e.g. `x.toml:7:15: model.num_experts: expected an integer >= 1, got 0`.
  void check(const Config& table) const;
};

namespace options_detail {

template <class M>
struct Kind;
template <> struct Kind<bool> { static constexpr ValueType type = ValueType::Bool, element = ValueType::Null; };
template <> struct Kind<int> { static constexpr ValueType type = ValueType::Int, element = ValueType::Null; };
template <> struct Kind<std::int64_t> { static constexpr ValueType type = ValueType::Int, element = ValueType::Null; };
template <> struct Kind<double> { static constexpr ValueType type = ValueType::Float, element = ValueType::Null; };
template <> struct Kind<float> { static constexpr ValueType type = ValueType::Float, element = ValueType::Null; };
template <> struct Kind<std::string> { static constexpr ValueType type = ValueType::String, element = ValueType::Null; };
template <> struct Kind<std::vector<std::int64_t>> { static constexpr ValueType type = ValueType::Array, element = ValueType::Int; };
template <> struct Kind<std::vector<int>> { static constexpr ValueType type = ValueType::Array, element = ValueType::Int; };
template <> struct Kind<std::vector<double>> { static constexpr ValueType type = ValueType::Array, element = ValueType::Float; };
template <> struct Kind<std::vector<std::string>> { static constexpr ValueType type = ValueType::Array, element = ValueType::String; };
template <> struct Kind<std::vector<std::vector<std::int64_t>>> { static constexpr ValueType type = ValueType::Array, element = ValueType::Array; };
template <> struct Kind<Config> { static constexpr ValueType type = ValueType::Table, element = ValueType::Null; };
template <> struct Kind<std::map<std::string, double>> { static constexpr ValueType type = ValueType::Table, element = ValueType::Float; };

/// TOML literal of a default value (floats: the shortest text that reads back to the same value).
MODLAB_API std::string literal(bool v);
MODLAB_API std::string literal(std::int64_t v);
MODLAB_API std::string literal(double v);
MODLAB_API std::string literal(float v);
MODLAB_API std::string literal(const std::string& v);
MODLAB_API std::string literal(const std::vector<std::int64_t>& v);
MODLAB_API std::string literal(const std::vector<double>& v);
MODLAB_API std::string literal(const std::vector<std::string>& v);
MODLAB_API std::string literal(const std::vector<std::vector<std::int64_t>>& v);
MODLAB_API std::string literal(const Config& v);
MODLAB_API std::string literal(const std::map<std::string, double>& v);
inline std::string literal(int v) { return literal(static_cast<std::int64_t>(v)); }
inline std::string literal(const std::vector<int>& v) { return literal(std::vector<std::int64_t>(v.begin(), v.end())); }

/// A table of numbers ({routing = 0.1}), each value checked to be a number.
MODLAB_API std::map<std::string, double> read_number_table(const Config& c, const std::string& key);

template <class M>
M read(const Config& c, const std::string& key) {
  if constexpr (std::is_same_v<M, std::map<std::string, double>>) return read_number_table(c, key);
  else if constexpr (std::is_same_v<M, Config>) return c.sub(key);  // absent: an empty table at this path
  else return c.get<M>(key);
}

}  // namespace options_detail

/// The declared options of one plugin table, bound to the members of `T`. Constraint calls
/// (choices, at_least, ...) apply to the key declared just before them. Supported member types:
/// bool, int, std::int64_t, double, float, std::string, std::vector of std::int64_t / int / double /
/// std::string, std::vector<std::vector<std::int64_t>>, std::map<std::string, double> (a table of
/// numbers) and Config (a sub-table, e.g. a wrapped model's table: see model_table()).
template <class T>
class Options {
 public:
  Options() : defaults_(std::make_shared<const T>()) {}

  /// Declares key `name` read into `member`; its default is `T{}.*member`.
  template <class M>
  Options& key(std::string name, M T::*member, std::string doc) {
    using K = options_detail::Kind<M>;
    KeySpec s;
    s.name = std::move(name);
    s.type = K::type;
    s.element = K::element;
    s.default_value = options_detail::literal((*defaults_).*member);
    s.doc = std::move(doc);
    specs_.push_back(std::move(s));
    always_.push_back(std::is_same_v<M, Config>);
    readers_.push_back([member](const Config& c, const std::string& k, T& out) {
      out.*member = options_detail::read<M>(c, k);
    });
    return *this;
  }

  /// The value (of a string key or each element of a string list) must be one of `values`.
  Options& choices(std::vector<std::string> values) {
    last().choices = std::move(values);
    return *this;
  }
  Options& at_least(double v) { return lower(v, false); }      ///< >= v
  Options& greater_than(double v) { return lower(v, true); }   ///< > v
  Options& at_most(double v) { return upper(v, false); }       ///< <= v
  Options& less_than(double v) { return upper(v, true); }      ///< < v
  Options& in_range(double lo, double hi) { return lower(lo, false).upper(hi, false); }  ///< [lo, hi]
  /// nan and inf are rejected (a bound alone lets inf through on its open side).
  Options& finite() {
    last().finite = true;
    return *this;
  }
  /// A Config key holding a wrapped model's table: `[model.inner] plugin = "moe"`; the host checks
  /// it against that model's keys before any run starts.
  Options& model_table() {
    last().model_table = true;
    return *this;
  }
  /// The runs of a population may differ in this key (docs/population.md): it changes no shape,
  /// and what it sets is used only by each member's own dataset or model instance, never by the
  /// batched training step — a data option (input noise), or a parameter group's learning rate or
  /// weight decay (ParamGroup), which the population applies per member. A key the forward or the
  /// loss reads (a temperature, a loss weight) must not be declared: the batched step would use
  /// the first member's value for all.
  Options& per_member() {
    last().per_member = true;
    return *this;
  }

  /// A struct with every key present in `c` read and checked; absent keys keep their defaults.
  T parse(const Config& c) const {
    T out{};
    parse_into(c, out);
    return out;
  }
  /// Reads and checks the keys present in `c` into `out`, leaving the others as they are (for
  /// layered tables, e.g. per-phase overrides of a base table).
  void parse_into(const Config& c, T& out) const {
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!always_[i] && !c.has(specs_[i].name)) continue;
      readers_[i](c, specs_[i].name, out);
      specs_[i].check(c);
    }
  }
  /// The declared keys, in declaration order.
  const std::vector<KeySpec>& specs() const { return specs_; }

 private:
  KeySpec& last() {
    if (specs_.empty()) throw ConfigError("Options: a constraint needs a key declared before it");
    return specs_.back();
  }
  Options& lower(double v, bool open) {
    last().min = v;
    last().min_open = open;
    return *this;
  }
  Options& upper(double v, bool open) {
    last().max = v;
    last().max_open = open;
    return *this;
  }

  std::shared_ptr<const T> defaults_;
  std::vector<KeySpec> specs_;
  std::vector<bool> always_;  // Config members: always read, so an absent table still knows its path
  std::vector<std::function<void(const Config&, const std::string&, T&)>> readers_;
};

}  // namespace modlab
