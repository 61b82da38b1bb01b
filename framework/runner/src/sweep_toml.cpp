// TOML → modlab::Value conversion. The only translation unit that sees toml++, so no TOML types
// leak into the rest of the runner.
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <modlab/errors.hpp>
#include <modlab/runner/sweep.hpp>
#include <sstream>

namespace modlab::runner {
namespace {

// `--set` values are parsed as the document "x = <value>"; columns are reported relative to the
// value text so that expansion can keep the order in which axes were written inside one --set.
constexpr int kOverridePrefix = 4;
const char* const kOverrideFile = "--set";

struct Origin {
  std::string file;
  bool from_override = false;
};

SourceLocation location_of(const toml::node& n, const Origin& o) {
  const auto& begin = n.source().begin;
  if (o.from_override) return {kOverrideFile, 0, std::max(0, static_cast<int>(begin.column) - kOverridePrefix)};
  return {o.file, static_cast<int>(begin.line), static_cast<int>(begin.column)};
}

Value convert(const toml::node& n, const Origin& o, const std::string& path) {
  SourceLocation loc = location_of(n, o);
  switch (n.type()) {
    case toml::node_type::table: {
      Value::Table t;
      for (auto&& [k, v] : *n.as_table()) {
        std::string key(k.str());
        t.emplace(key, convert(v, o, path.empty() ? key : path + "." + key));
      }
      return Value::table(std::move(t), loc);
    }
    case toml::node_type::array: {
      Value::Array a;
      std::size_t i = 0;
      for (const auto& e : *n.as_array()) a.push_back(convert(e, o, path + "[" + std::to_string(i++) + "]"));
      return Value::array(std::move(a), loc);
    }
    case toml::node_type::string:
      return Value::string(std::string(n.as_string()->get()), loc);
    case toml::node_type::integer:
      return Value::integer(n.as_integer()->get(), loc);
    case toml::node_type::floating_point:
      return Value::floating(n.as_floating_point()->get(), loc);
    case toml::node_type::boolean:
      return Value::boolean(n.as_boolean()->get(), loc);
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      throw ConfigError(loc.str() + ": " + path + ": dates are not supported; write the value as a string");
    case toml::node_type::none:
      break;
  }
  throw ConfigError(loc.str() + ": " + path + ": unsupported TOML value");
}

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError("cannot read sweep file '" + path + "': it is a folder, not a sweep file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot read sweep file '" + path + "': " + std::strerror(errno));
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

Value parse_toml(const std::string& text, const std::string& file_name) {
  try {
    toml::table root = toml::parse(text, file_name);
    return convert(root, Origin{file_name, false}, "");
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    throw ConfigError(file_name + ":" + std::to_string(begin.line) + ":" + std::to_string(begin.column) + ": " +
                      std::string(e.description()));
  }
}

Value parse_toml_file(const std::string& path) { return parse_toml(read_text(path), path); }

namespace {

// Position of the first byte that does not belong to well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or npos.
std::size_t invalid_utf8_at(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (n < 0 || i + static_cast<std::size_t>(n) >= s.size()) return i;
    std::uint32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += static_cast<std::size_t>(n) + 1;
  }
  return std::string::npos;
}

}  // namespace

std::pair<std::string, Value> parse_override(const std::string& text) {
  // A sweep file is UTF-8 (TOML); an override must be too, or its value could not be written back
  // into the run's config and read again.
  if (const std::size_t bad = invalid_utf8_at(text); bad != std::string::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(text[bad]));
    throw ConfigError(std::string(kOverrideFile) + ": not UTF-8 text (byte " + hex + " at position " + std::to_string(bad + 1) +
                      " of '" + text.substr(0, bad) + "...')");
  }
  // the first '=' outside quotes ends the key: sweep.grid."a=b"=[1] is legal, if odd
  std::size_t eq = std::string::npos;
  char quote = 0;
  for (std::size_t i = 0; i < text.size() && eq == std::string::npos; ++i) {
    char c = text[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '=') {
      eq = i;
    }
  }
  if (eq == std::string::npos)
    throw ConfigError(std::string(kOverrideFile) + " '" + text + "': expected key=value, e.g. train.lr=0.01");
  std::string key = trim(text.substr(0, eq));
  std::string raw = trim(text.substr(eq + 1));
  try {
    split_dotted(key);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(kOverrideFile) + " '" + text + "': " + e.what());
  }
  try {
    const std::string doc_text = "x = " + raw;
    toml::table doc = toml::parse(doc_text, std::string_view(kOverrideFile));
    if (doc.size() == 1 && doc.contains("x")) return {key, convert(*doc.get("x"), Origin{kOverrideFile, true}, key)};
  } catch (const toml::parse_error&) {
  } catch (const ConfigError&) {  // e.g. a date: keep the text as written
  }
  // not a TOML value: a bare word such as `moe` means the string "moe"
  return {key, Value::string(raw, SourceLocation{kOverrideFile, 0, 0})};
}

Sweep load_sweep(const std::string& path, const std::vector<std::string>& overrides) {
  std::string text = read_text(path);
  Value root = parse_toml(text, path);
  std::vector<std::pair<std::string, Value>> parsed;
  for (const auto& o : overrides) parsed.push_back(parse_override(o));
  return expand_sweep(root, path, text, parsed);
}

}  // namespace modlab::runner
