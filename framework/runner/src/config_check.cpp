#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/registry.hpp>

#include <modlab_internal/closest_match.hpp>

#include <algorithm>

namespace modlab::runner {
namespace {

[[noreturn]] void unknown_key(const Config& root, const Value& v, const std::string& key,
                              const std::vector<std::string>& names) {
  std::string msg = v.where().str() + ": unknown key '" + root.dotted(key) + "'";
  std::string near = closest_match(key, names);
  if (!near.empty()) {
    msg += " (did you mean '" + root.dotted(near) + "'?)";
  } else {
    msg += "; known keys: ";
    for (std::size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
  }
  throw ConfigError(msg);
}

void check_table(const Config& root, const Value& table, const std::string& rel, const std::vector<KeySpec>& keys,
                 const std::vector<std::string>& reserved, const std::vector<std::string>& names, ConfigErrors& errors) {
  for (const auto& [k, v] : table.as_table()) {
    std::string key = rel.empty() ? k : rel + "." + k;
    if (rel.empty() && std::find(reserved.begin(), reserved.end(), k) != reserved.end()) continue;
    auto spec = std::find_if(keys.begin(), keys.end(), [&](const KeySpec& s) { return s.name == key; });
    if (spec != keys.end()) {
      errors.check([&] { spec->check(root); });
      continue;
    }
    // a table is fine if some declared key lives below it
    bool parent = v.type() == ValueType::Table && std::any_of(keys.begin(), keys.end(), [&](const KeySpec& s) {
                    return s.name.rfind(key + ".", 0) == 0;
                  });
    if (parent) check_table(root, v, key, keys, reserved, names, errors);
    else errors.check([&, &value = v] { unknown_key(root, value, key, names); });
  }
}

/// "file:line:col: text" as "file:line: text": the runs of a grid see one problem at each of
/// their values on a line, which is one problem for the user.
std::string without_column(const std::string& message) {
  const auto colon = message.find(": ");
  if (colon == std::string::npos) return message;
  const auto last = message.rfind(':', colon - 1);
  if (last == std::string::npos || last + 1 == colon ||
      message.find_first_not_of("0123456789", last + 1) != colon)
    return message;
  return message.substr(0, last) + message.substr(colon);
}

}  // namespace

void ConfigErrors::add(const std::string& message) {
  std::size_t start = 0;
  for (std::size_t end; start <= message.size(); start = end + 1) {
    end = std::min(message.find('\n', start), message.size());
    const std::string line = message.substr(start, end - start);
    if (!line.empty() && seen_.insert(without_column(line)).second) messages_.push_back(line);
  }
}

void ConfigErrors::throw_if_any(const std::string& where, std::size_t cap) const {
  if (messages_.empty()) return;
  if (messages_.size() == 1) throw ConfigError(messages_.front());
  std::string text = std::to_string(messages_.size()) + " problems" + (where.empty() ? "" : " " + where) + ":";
  for (std::size_t i = 0; i < messages_.size() && i < cap; ++i) text += "\n  " + messages_[i];
  if (messages_.size() > cap) text += "\n  ... and " + std::to_string(messages_.size() - cap) + " more";
  throw ConfigError(text);
}

bool AccessLog::was_read(const std::string& key) const {
  if (read_.count(key)) return true;
  // a parent table read as a whole, or any child read, counts
  for (std::string k = key; !k.empty();) {
    auto dot = k.rfind('.');
    if (dot == std::string::npos) break;
    k = k.substr(0, dot);
    if (read_.count(k)) return true;
  }
  auto it = read_.lower_bound(key + ".");
  return it != read_.end() && it->compare(0, key.size() + 1, key + ".") == 0;
}

void validate_keys(const Config& table, const std::vector<KeySpec>& keys, const std::vector<std::string>& reserved,
                   ConfigErrors* errors) {
  std::vector<std::string> names;
  for (const auto& k : keys) names.push_back(k.name);
  ConfigErrors own;
  check_table(table, table.value(), "", keys, reserved, names, errors ? *errors : own);
  own.throw_if_any("");
}

void validate_model_table(const Config& table, const std::vector<KeySpec>& keys, const Registry& registry,
                          ConfigErrors* errors) {
  ConfigErrors own;
  ConfigErrors& found = errors ? *errors : own;
  validate_keys(table, keys, {"plugin"}, &found);
  for (const auto& k : keys) {
    if (!k.model_table || !table.has(k.name)) continue;
    found.check([&] {
      Config inner = table.sub(k.name);
      if (!inner.has("plugin"))
        inner.fail("plugin", "required key is missing (a nested model table names the model it configures)");
      const std::string name = inner.get<std::string>("plugin");
      if (!registry.has_model(name)) inner.fail_unknown("plugin", "model plugin", name, registry.model_names());
      validate_model_table(inner, registry.model(name).keys, registry, &found);
    });
  }
  own.throw_if_any("");
}

}  // namespace modlab::runner
