#include <modlab/config.hpp>
#include <modlab/errors.hpp>
#include <modlab_internal/closest_match.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace modlab {

std::string SourceLocation::str() const {
  if (file.empty()) return "<unknown>";
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

const char* type_name(ValueType t) {
  switch (t) {
    case ValueType::Null: return "nothing";
    case ValueType::Bool: return "boolean";
    case ValueType::Int: return "integer";
    case ValueType::Float: return "float";
    case ValueType::String: return "string";
    case ValueType::Array: return "array";
    case ValueType::Table: return "table";
  }
  return "?";
}

Value::Value() = default;

Value Value::boolean(bool v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::Bool;
  x.b_ = v;
  x.loc_ = std::move(loc);
  return x;
}
Value Value::integer(std::int64_t v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::Int;
  x.i_ = v;
  x.loc_ = std::move(loc);
  return x;
}
Value Value::floating(double v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::Float;
  x.d_ = v;
  x.loc_ = std::move(loc);
  return x;
}
Value Value::string(std::string v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::String;
  x.s_ = std::move(v);
  x.loc_ = std::move(loc);
  return x;
}
Value Value::array(Array v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::Array;
  x.a_ = std::make_shared<Array>(std::move(v));
  x.loc_ = std::move(loc);
  return x;
}
Value Value::table(Table v, SourceLocation loc) {
  Value x;
  x.type_ = ValueType::Table;
  x.t_ = std::make_shared<Table>(std::move(v));
  x.loc_ = std::move(loc);
  return x;
}

namespace {
[[noreturn]] void wrong_type(const Value& v, ValueType want) {
  throw ConfigError(v.where().str() + ": expected " + type_name(want) + ", found " + type_name(v.type()));
}
}  // namespace

bool Value::as_bool() const {
  if (type_ != ValueType::Bool) wrong_type(*this, ValueType::Bool);
  return b_;
}
std::int64_t Value::as_int() const {
  if (type_ != ValueType::Int) wrong_type(*this, ValueType::Int);
  return i_;
}
double Value::as_float() const {
  if (type_ == ValueType::Int) return static_cast<double>(i_);
  if (type_ != ValueType::Float) wrong_type(*this, ValueType::Float);
  return d_;
}
const std::string& Value::as_string() const {
  if (type_ != ValueType::String) wrong_type(*this, ValueType::String);
  return s_;
}
const Value::Array& Value::as_array() const {
  if (type_ != ValueType::Array) wrong_type(*this, ValueType::Array);
  return *a_;
}
const Value::Table& Value::as_table() const {
  if (type_ != ValueType::Table) wrong_type(*this, ValueType::Table);
  return *t_;
}
namespace {
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {  // TOML allows no raw control character
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

bool bare_key(const std::string& k) {
  if (k.empty()) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string key_text(const std::string& k) { return bare_key(k) ? k : quote(k); }

std::string float_text(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  // shortest representation that round-trips
  for (int prec = 1; prec <= 17; ++prec) {
    char b2[64];
    std::snprintf(b2, sizeof b2, "%.*g", prec, d);
    if (std::strtod(b2, nullptr) == d) {
      std::snprintf(buf, sizeof buf, "%s", b2);
      break;
    }
  }
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

}  // namespace

std::string Value::literal() const {
  switch (type_) {
    case ValueType::Null: return "\"\"";
    case ValueType::Bool: return b_ ? "true" : "false";
    case ValueType::Int: return std::to_string(i_);
    case ValueType::Float: return float_text(d_);
    case ValueType::String: return quote(s_);
    case ValueType::Array: {
      std::string out = "[";
      for (std::size_t i = 0; i < a_->size(); ++i) {
        if (i) out += ", ";
        out += (*a_)[i].literal();
      }
      return out + "]";
    }
    case ValueType::Table: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : *t_) {
        if (!first) out += ", ";
        first = false;
        out += key_text(k) + " = " + v.literal();
      }
      return out + "}";
    }
  }
  return "";
}

bool Value::operator==(const Value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case ValueType::Null: return true;
    case ValueType::Bool: return b_ == o.b_;
    case ValueType::Int: return i_ == o.i_;
    case ValueType::Float: return d_ == o.d_ || (std::isnan(d_) && std::isnan(o.d_));
    case ValueType::String: return s_ == o.s_;
    case ValueType::Array: return *a_ == *o.a_;
    case ValueType::Table: return *t_ == *o.t_;
  }
  return false;
}

ReadObserver::~ReadObserver() = default;

Config::Config() : table_(std::make_shared<Value>(Value::table({}))) {}

Config::Config(std::shared_ptr<const Value> table, std::string prefix, std::shared_ptr<ReadObserver> observer)
    : table_(std::move(table)), prefix_(std::move(prefix)), observer_(std::move(observer)) {
  if (!table_) table_ = std::make_shared<Value>(Value::table({}));
  if (table_->type() != ValueType::Table)
    throw ConfigError(table_->where().str() + ": '" + prefix_ + "' must be a table, found " +
                      type_name(table_->type()));
}

std::string Config::dotted(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

SourceLocation Config::where() const { return table_->where(); }

const Value* Config::lookup(const std::string& key) const {
  const Value* cur = table_.get();
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur->type() != ValueType::Table) return nullptr;
    const auto& t = cur->as_table();
    auto it = t.find(part);
    if (it == t.end()) return nullptr;
    cur = &it->second;
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

bool Config::has(const std::string& key) const { return lookup(key) != nullptr; }

const Value* Config::find(const std::string& key) const {
  const Value* v = lookup(key);
  if (v && observer_) observer_->read(dotted(key));
  return v;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  for (const auto& kv : table_->as_table()) out.push_back(kv.first);
  return out;
}

Config Config::sub(const std::string& key) const {
  const Value* v = lookup(key);  // viewing a table is not reading its keys
  if (!v) return Config(std::make_shared<Value>(Value::table({}, table_->where())), dotted(key), observer_);
  if (v->type() != ValueType::Table) fail(key, std::string("expected a table, found ") + type_name(v->type()));
  // aliasing shared_ptr: the view keeps the whole tree alive
  return Config(std::shared_ptr<const Value>(table_, v), dotted(key), observer_);
}

void Config::fail(const std::string& key, const std::string& message) const {
  const Value* v = lookup(key);
  SourceLocation loc = v ? v->where() : table_->where();
  throw ConfigError(loc.str() + ": " + dotted(key) + ": " + message);
}

void Config::check_choice(const std::string& key, const std::string& value,
                          const std::vector<std::string>& choices) const {
  std::string list;
  for (const auto& c : choices) {
    if (c == value) return;
    list += (list.empty() ? "\"" : ", \"") + c + "\"";
  }
  const std::string near = closest_match(value, choices);
  fail(key, "expected one of " + list + ", got \"" + value + "\"" + (near.empty() ? "" : " (did you mean '" + near + "'?)"));
}

std::string Config::get_choice(const std::string& key, const std::string& fallback,
                               const std::vector<std::string>& choices) const {
  std::string v = get_or<std::string>(key, fallback);
  check_choice(key, v, choices);
  return v;
}

void Config::fail_unknown(const std::string& key, const std::string& what, const std::string& name,
                          const std::vector<std::string>& known, const std::string& note) const {
  std::string near = closest_match(name, known);
  fail(key, "unknown " + what + " '" + name + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)") + note);
}

namespace {
const Value& require(const Config& c, const std::string& key) {
  const Value* v = c.find(key);
  if (!v) c.fail(key, "required key is missing");
  return *v;
}
void expect(const Config& c, const std::string& key, const Value& v, ValueType want, const char* want_text = nullptr) {
  bool ok = v.type() == want || (want == ValueType::Float && v.type() == ValueType::Int);
  if (!ok)
    c.fail(key, std::string("expected ") + (want_text ? want_text : type_name(want)) + ", found " +
                    type_name(v.type()) + " " + v.literal());
}
template <class T, class F>
std::vector<T> list_of(const Config& c, const std::string& key, ValueType elem, const char* what, F conv) {
  const Value& v = require(c, key);
  expect(c, key, v, ValueType::Array, what);
  std::vector<T> out;
  std::size_t i = 0;
  for (const auto& e : v.as_array()) {
    bool ok = e.type() == elem || (elem == ValueType::Float && e.type() == ValueType::Int);
    if (!ok)
      c.fail(key, std::string("expected ") + what + ", element " + std::to_string(i) + " is " +
                      type_name(e.type()) + " " + e.literal());
    out.push_back(conv(e));
    ++i;
  }
  return out;
}
}  // namespace

template <>
bool Config::get<bool>(const std::string& key) const {
  const Value& v = require(*this, key);
  expect(*this, key, v, ValueType::Bool);
  return v.as_bool();
}
template <>
std::int64_t Config::get<std::int64_t>(const std::string& key) const {
  const Value& v = require(*this, key);
  expect(*this, key, v, ValueType::Int);
  return v.as_int();
}
template <>
int Config::get<int>(const std::string& key) const {
  std::int64_t x = get<std::int64_t>(key);
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
    fail(key, "integer " + std::to_string(x) + " is out of range");
  return static_cast<int>(x);
}
template <>
double Config::get<double>(const std::string& key) const {
  const Value& v = require(*this, key);
  expect(*this, key, v, ValueType::Float);
  return v.as_float();
}
template <>
float Config::get<float>(const std::string& key) const {
  return static_cast<float>(get<double>(key));
}
template <>
std::string Config::get<std::string>(const std::string& key) const {
  const Value& v = require(*this, key);
  expect(*this, key, v, ValueType::String);
  return v.as_string();
}
template <>
std::vector<std::int64_t> Config::get<std::vector<std::int64_t>>(const std::string& key) const {
  return list_of<std::int64_t>(*this, key, ValueType::Int, "an array of integers",
                               [](const Value& e) { return e.as_int(); });
}
template <>
std::vector<int> Config::get<std::vector<int>>(const std::string& key) const {
  return list_of<int>(*this, key, ValueType::Int, "an array of integers",
                      [](const Value& e) { return static_cast<int>(e.as_int()); });
}
template <>
std::vector<double> Config::get<std::vector<double>>(const std::string& key) const {
  return list_of<double>(*this, key, ValueType::Float, "an array of numbers",
                         [](const Value& e) { return e.as_float(); });
}
template <>
std::vector<std::string> Config::get<std::vector<std::string>>(const std::string& key) const {
  return list_of<std::string>(*this, key, ValueType::String, "an array of strings",
                              [](const Value& e) { return e.as_string(); });
}
template <>
std::vector<std::vector<std::int64_t>> Config::get<std::vector<std::vector<std::int64_t>>>(
    const std::string& key) const {
  const Value& v = require(*this, key);
  expect(*this, key, v, ValueType::Array, "an array of integer arrays");
  std::vector<std::vector<std::int64_t>> out;
  std::size_t i = 0;
  for (const auto& row : v.as_array()) {
    if (row.type() != ValueType::Array)
      fail(key, "expected an array of integer arrays, element " + std::to_string(i) + " is " + type_name(row.type()));
    std::vector<std::int64_t> r;
    for (const auto& e : row.as_array()) {
      if (e.type() != ValueType::Int)
        fail(key, "expected an array of integer arrays, element " + std::to_string(i) + " holds " +
                      type_name(e.type()) + " " + e.literal());
      r.push_back(e.as_int());
    }
    out.push_back(std::move(r));
    ++i;
  }
  return out;
}
template <>
Config Config::get<Config>(const std::string& key) const {
  require(*this, key);
  return sub(key);
}

}  // namespace modlab
