// Declared options: the checks of one key (type, choices, bounds) and the TOML text of defaults.
// The host's preflight and the plugin's parse() both call KeySpec::check, so a value rejected in a
// worker is rejected before the first run starts, with the same message.
#include <modlab/errors.hpp>
#include <modlab/options.hpp>
#include <modlab_internal/closest_match.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace modlab {
namespace {

bool numeric(ValueType t) { return t == ValueType::Int || t == ValueType::Float; }

/// The type constraints apply to: the value's own, or its elements' for lists and number tables.
ValueType checked_type(const KeySpec& k) {
  if (k.type == ValueType::Array && k.element == ValueType::Array) return ValueType::Int;  // list of int lists
  return k.type == ValueType::Array || k.type == ValueType::Table ? k.element : k.type;
}

bool has_bounds(const KeySpec& k) { return k.min || k.max || k.finite; }

std::string number_text(double v, bool integer) {
  char buf[64];
  if (integer) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string range_text(const KeySpec& k) {
  const bool integer = checked_type(k) == ValueType::Int;
  std::string out;
  if (k.min && k.max) {
    out = std::string("in ") + (k.min_open ? "(" : "[") + number_text(*k.min, integer) + ", " +
          number_text(*k.max, integer) + (k.max_open ? ")" : "]");
  } else if (k.min) {
    out = std::string(k.min_open ? "> " : ">= ") + number_text(*k.min, integer);
  } else if (k.max) {
    out = std::string(k.max_open ? "< " : "<= ") + number_text(*k.max, integer);
  }
  return out;
}

std::string choices_text(const std::vector<std::string>& choices, const char* sep, bool quoted) {
  std::string out;
  for (const auto& c : choices) out += (out.empty() ? "" : sep) + (quoted ? "\"" + c + "\"" : c);
  return out;
}

bool type_ok(const Value& v, ValueType want) {
  return want == ValueType::Null || v.type() == want || (want == ValueType::Float && v.type() == ValueType::Int);
}

bool whole_type_ok(const Value& v, const KeySpec& k) {
  if (!type_ok(v, k.type)) return false;
  if (k.element == ValueType::Null) return true;
  if (k.type == ValueType::Array) {
    for (const auto& e : v.as_array()) {
      if (!type_ok(e, k.element)) return false;
      if (k.element == ValueType::Array)
        for (const auto& x : e.as_array())
          if (x.type() != ValueType::Int) return false;
    }
  }
  if (k.type == ValueType::Table)
    for (const auto& [name, e] : v.as_table())
      if (!type_ok(e, k.element)) return false;
  return true;
}

bool in_bounds(const KeySpec& k, double x) {
  if (k.finite && !std::isfinite(x)) return false;
  if (k.min && !(k.min_open ? x > *k.min : x >= *k.min)) return false;
  if (k.max && !(k.max_open ? x < *k.max : x <= *k.max)) return false;
  return true;
}

bool allowed(const KeySpec& k, const Value& e) {
  if (e.type() == ValueType::String)
    return k.choices.empty() || std::find(k.choices.begin(), k.choices.end(), e.as_string()) != k.choices.end();
  if (numeric(e.type())) return in_bounds(k, e.as_float());
  return true;
}

/// "an integer >= 1", "a finite number in [0, 1)" (one value) or "integers >= 1" (elements).
std::string wanted(const KeySpec& k, bool plural) {
  if (!k.choices.empty()) return (plural ? "each one of " : "one of ") + choices_text(k.choices, ", ", true);
  const bool integer = checked_type(k) == ValueType::Int;
  std::string noun = integer ? (plural ? "integers" : "an integer") : (plural ? "numbers" : "a number");
  if (k.finite && !integer) noun = plural ? "finite numbers" : "a finite number";
  std::string range = range_text(k);
  return range.empty() ? noun : noun + " " + range;
}

/// Every scalar the constraints apply to, with where it sits ("" = the value itself).
void for_each_scalar(const Value& v, const std::string& where, const std::function<void(const Value&, const std::string&)>& f) {
  if (v.type() == ValueType::Array) {
    std::size_t i = 0;
    for (const auto& e : v.as_array()) for_each_scalar(e, "element " + std::to_string(i++), f);
  } else if (v.type() == ValueType::Table) {
    for (const auto& [name, e] : v.as_table()) for_each_scalar(e, "'" + name + "'", f);
  } else {
    f(v, where);
  }
}

/// The value at a dotted key, without telling the table's observer: checking a key is not using it.
const Value* peek(const Config& table, const std::string& dotted) {
  const Value* cur = &table.value();
  for (std::size_t start = 0;;) {
    const auto dot = dotted.find('.', start);
    if (cur->type() != ValueType::Table) return nullptr;
    const auto& t = cur->as_table();
    auto it = t.find(dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (it == t.end()) return nullptr;
    cur = &it->second;
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

std::string shortest_float(float v) {
  char buf[64];
  for (int prec = 1; prec <= 9; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

std::string KeySpec::type_text() const {
  if (type == ValueType::Array && element == ValueType::Array) return "array of integer arrays";
  if (type == ValueType::Array && element != ValueType::Null) return std::string("array of ") + type_name(element) + "s";
  if (type == ValueType::Table && element != ValueType::Null) return std::string("table of ") + type_name(element) + "s";
  return type_name(type);
}

std::string KeySpec::constraint() const {
  if (model_table) return "model table";
  const bool each = type == ValueType::Array || type == ValueType::Table;
  std::string out;
  if (!choices.empty()) out = choices_text(choices, " | ", false);
  else if (has_bounds(*this)) {
    std::string range = range_text(*this);
    out = finite && checked_type(*this) != ValueType::Int ? (range.empty() ? "finite" : "finite, " + range) : range;
  }
  return out.empty() || !each ? out : "each " + out;
}

namespace {
/// " (did you mean 'adam'?)" for a string close to one of the choices, else "".
std::string near_choice(const KeySpec& k, const Value& v) {
  if (k.choices.empty() || v.type() != ValueType::String) return "";
  const std::string near = closest_match(v.as_string(), k.choices);
  return near.empty() ? "" : " (did you mean '" + near + "'?)";
}
}  // namespace

void KeySpec::check(const Config& table) const {
  const Value* v = peek(table, name);
  if (!v) return;
  if (!whole_type_ok(*v, *this))
    table.fail(name, "expected " + type_text() + ", found " + type_name(v->type()) + " " + v->literal());
  if (choices.empty() && !has_bounds(*this)) return;
  if (v->type() != ValueType::Array && v->type() != ValueType::Table) {
    if (!allowed(*this, *v))
      table.fail(name, "expected " + wanted(*this, false) + ", got " + v->literal() + near_choice(*this, *v));
    return;
  }
  for_each_scalar(*v, "", [&](const Value& e, const std::string& where) {
    if (!allowed(*this, e))
      table.fail(name, "expected " + wanted(*this, true) + ", " + where + " is " + e.literal() + near_choice(*this, e));
  });
}

namespace options_detail {

std::string literal(bool v) { return Value::boolean(v).literal(); }
std::string literal(std::int64_t v) { return Value::integer(v).literal(); }
std::string literal(double v) { return Value::floating(v).literal(); }
std::string literal(float v) { return Value::floating(std::strtod(shortest_float(v).c_str(), nullptr)).literal(); }
std::string literal(const std::string& v) { return Value::string(v).literal(); }

template <class E>
std::string list_literal(const std::vector<E>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + literal(v[i]);
  return out + "]";
}
std::string literal(const std::vector<std::int64_t>& v) { return list_literal(v); }
std::string literal(const std::vector<double>& v) { return list_literal(v); }
std::string literal(const std::vector<std::string>& v) { return list_literal(v); }
std::string literal(const std::vector<std::vector<std::int64_t>>& v) { return list_literal(v); }
std::string literal(const Config& v) { return v.value().literal(); }
std::string literal(const std::map<std::string, double>& v) {
  Value::Table t;
  for (const auto& [k, x] : v) t[k] = Value::floating(x);
  return Value::table(std::move(t)).literal();
}

std::map<std::string, double> read_number_table(const Config& c, const std::string& key) {
  Config t = c.get<Config>(key);
  std::map<std::string, double> out;
  for (const auto& k : t.keys()) out[k] = t.get<double>(k);
  return out;
}

}  // namespace options_detail
}  // namespace modlab
