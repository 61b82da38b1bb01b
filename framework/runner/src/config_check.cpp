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
                 const std::vector<std::string>& reserved, const std::vector<std::string>& names) {
  for (const auto& [k, v] : table.as_table()) {
    std::string key = rel.empty() ? k : rel + "." + k;
    if (rel.empty() && std::find(reserved.begin(), reserved.end(), k) != reserved.end()) continue;
    auto spec = std::find_if(keys.begin(), keys.end(), [&](const KeySpec& s) { return s.name == key; });
    if (spec != keys.end()) {
      spec->check(root);
      continue;
    }
    // a table is fine if some declared key lives below it
    bool parent = v.type() == ValueType::Table && std::any_of(keys.begin(), keys.end(), [&](const KeySpec& s) {
                    return s.name.rfind(key + ".", 0) == 0;
                  });
    if (!parent) unknown_key(root, v, key, names);
    check_table(root, v, key, keys, reserved, names);
  }
}

}  // namespace

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

void validate_keys(const Config& table, const std::vector<KeySpec>& keys, const std::vector<std::string>& reserved) {
  std::vector<std::string> names;
  for (const auto& k : keys) names.push_back(k.name);
  check_table(table, table.value(), "", keys, reserved, names);
}

void validate_model_table(const Config& table, const std::vector<KeySpec>& keys, const Registry& registry) {
  validate_keys(table, keys, {"plugin"});
  for (const auto& k : keys) {
    if (!k.model_table || !table.has(k.name)) continue;
    Config inner = table.sub(k.name);
    if (!inner.has("plugin"))
      inner.fail("plugin", "required key is missing (a nested model table names the model it configures)");
    const std::string name = inner.get<std::string>("plugin");
    if (!registry.has_model(name)) inner.fail_unknown("plugin", "model plugin", name, registry.model_names());
    validate_model_table(inner, registry.model(name).keys, registry);
  }
}

}  // namespace modlab::runner
