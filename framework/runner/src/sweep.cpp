// Sweep expansion: base run + [sweep] grid / zip / seeds → one resolved config per run, with a
// run id that hashes the canonical config (so a resumed sweep recognises finished runs).
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <modlab/errors.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab_internal/closest_match.hpp>
#include <set>
#include <sstream>
#include <tuple>

namespace modlab::runner {
namespace {

const char* const kSweepKeys[] = {"grid", "zip", "seeds"};
constexpr std::size_t kMaxRuns = 1000000;

std::string join(const std::vector<std::string>& parts, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n && i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

/// Normal form of a dotted key: quotes dropped, parts joined by dots.
std::string normal_key(const std::string& dotted) {
  auto parts = split_dotted(dotted);
  return join(parts, parts.size());
}

const Value* find_path(const Value& root, const std::vector<std::string>& parts) {
  const Value* cur = &root;
  for (const auto& p : parts) {
    if (cur->type() != ValueType::Table) return nullptr;
    auto it = cur->as_table().find(p);
    if (it == cur->as_table().end()) return nullptr;
    cur = &it->second;
  }
  return cur;
}

// Value trees are immutable; setting a key rebuilds the tables on its path (their other children
// are shared, not copied).
Value with_parts(const Value& table, const std::vector<std::string>& parts, std::size_t i, Value value) {
  Value::Table t = table.as_table();
  if (i + 1 == parts.size()) {
    t[parts[i]] = std::move(value);
    return Value::table(std::move(t), table.where());
  }
  auto it = t.find(parts[i]);
  if (it == t.end()) {
    it = t.emplace(parts[i], Value::table({}, value.where())).first;
  } else if (it->second.type() != ValueType::Table) {
    throw ConfigError(value.where().str() + ": cannot set '" + join(parts, parts.size()) + "': '" + join(parts, i + 1) +
                      "' is " + type_name(it->second.type()) + " " + it->second.literal() + " (" +
                      it->second.where().str() + "), not a table");
  }
  it->second = with_parts(it->second, parts, i + 1, std::move(value));
  return Value::table(std::move(t), table.where());
}

void set_parts(Value& table, const std::vector<std::string>& parts, Value value) {
  table = with_parts(table, parts, 0, std::move(value));
}

Value without(const Value& table, const std::string& key) {
  Value::Table t = table.as_table();
  t.erase(key);
  return Value::table(std::move(t), table.where());
}

bool bare_key(const std::string& k) {
  return !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

std::string key_text(const std::string& k) { return bare_key(k) ? k : Value::string(k).literal(); }

void emit_table(const Value::Table& t, const std::string& path, std::ostringstream& os) {
  // scalars and arrays first, then sub-tables, as TOML requires
  for (const auto& [k, v] : t)
    if (v.type() != ValueType::Table) os << key_text(k) << " = " << v.literal() << "\n";
  for (const auto& [k, v] : t) {
    if (v.type() != ValueType::Table) continue;
    std::string sub = path.empty() ? key_text(k) : path + "." + key_text(k);
    os << "\n[" << sub << "]\n";
    emit_table(v.as_table(), sub, os);
  }
}

/// One varied key and the values it takes.
struct Axis {
  std::string key;  // normal dotted form
  const Value* list = nullptr;
};

/// Leaves of a grid or zip table, flattened to dotted keys, so `{"model.x" = [..]}` and
/// `{model = {x = [..]}}` mean the same axis.
void flatten(const Value& table, const std::string& prefix, std::vector<Axis>& out) {
  for (const auto& [k, v] : table.as_table()) {
    std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.type() == ValueType::Table)
      flatten(v, key, out);
    else
      out.push_back({normal_key(key), &v});
  }
}

/// Axes in the order they were written: by (line, column) of their value lists. Values from
/// --set have line 0 and sort by their column inside the override text.
std::vector<Axis> axes_in_order(const Value& table) {
  std::vector<Axis> axes;
  flatten(table, "", axes);
  std::stable_sort(axes.begin(), axes.end(), [](const Axis& a, const Axis& b) {
    return std::make_tuple(a.list->where().line, a.list->where().column) <
           std::make_tuple(b.list->where().line, b.list->where().column);
  });
  return axes;
}

/// `dataset = [{ plugin = "toy", ... }, { plugin = "rotated_mnist", ... }]`: each value replaces the
/// whole table, so runs of one sweep may use datasets (or models) whose keys differ.
bool whole_table_axis(const Axis& a) {
  static const std::set<std::string> tables = {"dataset", "model", "train"};
  if (!tables.count(normal_key(a.key)) || a.list->type() != ValueType::Array || a.list->as_array().empty()) return false;
  for (const auto& v : a.list->as_array())
    if (v.type() != ValueType::Table) return false;
  return true;
}

void check_axis(const Axis& a, const std::string& owner) {
  const Value& v = *a.list;
  std::string name = v.where().str() + ": " + owner + ".\"" + a.key + "\"";
  if (split_dotted(a.key).size() < 2 && !whole_table_axis(a))
    throw ConfigError(name + ": an axis key must be a dotted key into a table, e.g. \"train.lr\", or dataset, "
                             "model or train with a list of whole tables");
  if (a.key == "run.seed") throw ConfigError(name + ": vary the seed with sweep.seeds, not as an axis");
  if (v.type() != ValueType::Array)
    throw ConfigError(name + ": expected a list of values, found " + type_name(v.type()) + " " + v.literal() +
                      " (write [" + v.literal() + "] for a single value)");
  if (v.as_array().empty()) throw ConfigError(name + ": an axis needs at least one value");
}

const Value& expect_table(const Value& v, const std::string& what) {
  if (v.type() != ValueType::Table)
    throw ConfigError(v.where().str() + ": " + what + ": expected a table, found " + type_name(v.type()) + " " +
                      v.literal());
  return v;
}

std::vector<Value> seed_values(const Value* seeds, const Value& base) {
  std::vector<Value> out;
  if (!seeds) {
    const Value* s = find_path(base, {"run", "seed"});
    if (s && s->type() != ValueType::Int)
      throw ConfigError(s->where().str() + ": run.seed: expected integer, found " + type_name(s->type()) + " " +
                        s->literal());
    out.push_back(s ? *s : Value::integer(0));
    return out;
  }
  std::string bad = seeds->where().str() +
                    ": sweep.seeds: expected a count n > 0 (seeds 0..n-1) or a non-empty "
                    "list of integers, found ";
  if (seeds->type() == ValueType::Int) {
    if (seeds->as_int() < 1 || static_cast<std::size_t>(seeds->as_int()) > kMaxRuns)
      throw ConfigError(bad + seeds->literal());
    for (std::int64_t i = 0; i < seeds->as_int(); ++i) out.push_back(Value::integer(i, seeds->where()));
    return out;
  }
  if (seeds->type() != ValueType::Array || seeds->as_array().empty())
    throw ConfigError(bad + type_name(seeds->type()) + " " + seeds->literal());
  for (const auto& s : seeds->as_array()) {
    if (s.type() != ValueType::Int) throw ConfigError(bad + "an element " + s.literal());
    out.push_back(s);
  }
  return out;
}

}  // namespace

std::vector<std::string> split_dotted(const std::string& dotted) {
  std::vector<std::string> parts;
  std::string cur;
  bool quoted_part = false;
  for (std::size_t i = 0; i <= dotted.size(); ++i) {
    char c = i < dotted.size() ? dotted[i] : '.';
    if (c == '"' || c == '\'') {
      auto end = dotted.find(c, i + 1);
      if (end == std::string::npos) throw ConfigError("key '" + dotted + "': unterminated quote");
      cur += dotted.substr(i + 1, end - i - 1);
      quoted_part = true;
      i = end;
    } else if (c == '.') {
      auto b = cur.find_first_not_of(" \t"), e = cur.find_last_not_of(" \t");
      std::string part = quoted_part || b == std::string::npos ? cur : cur.substr(b, e - b + 1);
      if (part.empty() && !quoted_part) throw ConfigError("key '" + dotted + "': empty part");
      parts.push_back(part);
      cur.clear();
      quoted_part = false;
    } else if (!(quoted_part && (c == ' ' || c == '\t'))) {  // blanks after a quoted part
      cur += c;
    }
  }
  return parts;
}

void set_dotted(Value& table, const std::string& dotted, Value value) {
  set_parts(table, split_dotted(dotted), std::move(value));
}

namespace {

/// `[run] population = "auto"` is stored as 0, the value RunSettings reads as "pick P" (trainer.hpp).
void normalize_population(Value& base) {
  const Value* p = find_path(base, {"run", "population"});
  if (!p || p->type() != ValueType::String) return;
  if (p->as_string() != "auto")
    throw ConfigError(p->where().str() + ": run.population: expected a number of runs (1 = alone) or \"auto\", got \"" +
                      p->as_string() + "\"");
  set_parts(base, {"run", "population"}, Value::integer(0, p->where()));
}

using Overrides = std::vector<std::pair<std::string, Value>>;
using Dims = std::vector<std::vector<Axis>>;  // dims[d] = axes varied together (a grid axis, a zip group)

/// The sweep file and its overrides: the base run (every table but [sweep]) and the [sweep] table.
struct SweepParts {
  Value base, sweep;
  std::vector<std::string> grid_order;  // grid axes as written; axes an override adds follow, in order given
  std::vector<std::pair<std::string, const Value*>> base_overrides;  // --set keys outside [sweep]
};

void note_grid_order(SweepParts& s) {
  const Value* g = find_path(s.sweep, {"grid"});
  if (!g || g->type() != ValueType::Table) return;
  for (const auto& a : axes_in_order(*g))
    if (std::find(s.grid_order.begin(), s.grid_order.end(), a.key) == s.grid_order.end()) s.grid_order.push_back(a.key);
}

SweepParts sweep_parts(const Value& root, const std::string& file, const Overrides& overrides) {
  SweepParts s{expect_table(root, "sweep file"), Value::table({}, SourceLocation{file, 0, 0}), {}, {}};
  if (auto it = s.base.as_table().find("sweep"); it != s.base.as_table().end()) {
    s.sweep = expect_table(it->second, "sweep");
    s.base = without(s.base, "sweep");
  }
  note_grid_order(s);
  for (const auto& [key, value] : overrides) {
    auto parts = split_dotted(key);
    if (parts.front() != "sweep") {
      set_parts(s.base, parts, value);
      s.base_overrides.emplace_back(join(parts, parts.size()), &value);
      continue;
    }
    if (parts.size() == 1)
      s.sweep = expect_table(value, "--set sweep");
    else
      set_parts(s.sweep, std::vector<std::string>(parts.begin() + 1, parts.end()), value);
    note_grid_order(s);
  }
  return s;
}

/// Keys outside a table and unknown sweep.* keys are errors naming where they are.
void check_tables(const SweepParts& s) {
  for (const auto& [k, v] : s.base.as_table())
    if (v.type() != ValueType::Table)
      throw ConfigError(v.where().str() + ": top-level key '" + k +
                        "' is not inside a table; put it under [run], [dataset], [model] or [train]");
  std::vector<std::string> valid(std::begin(kSweepKeys), std::end(kSweepKeys));
  for (const auto& [k, v] : s.sweep.as_table()) {
    if (std::find(valid.begin(), valid.end(), k) != valid.end()) continue;
    std::string near = closest_match(k, valid);
    throw ConfigError(v.where().str() + ": unknown key 'sweep." + k + "'" +
                      (near.empty() ? "; valid keys: grid, zip, seeds" : " (did you mean 'sweep." + near + "'?)"));
  }
}

/// Checks one zip group's axes: valid axes whose lists are equally long.
void check_zip_group(const std::vector<Axis>& axes, const Value& group, const std::string& owner) {
  if (axes.empty()) throw ConfigError(group.where().str() + ": " + owner + " is empty");
  for (const auto& a : axes) {
    check_axis(a, owner);
    std::size_t n0 = axes[0].list->as_array().size(), n = a.list->as_array().size();
    if (n != n0)
      throw ConfigError(a.list->where().str() + ": " + owner + ": \"" + axes[0].key + "\" has " +
                        std::to_string(n0) + " values but \"" + a.key + "\" has " + std::to_string(n) +
                        "; lists in one zip group vary together and need equal lengths");
  }
}

/// The varied dimensions: each grid axis (in `grid_order`) one, then each zip group one. The axes
/// point into `s.sweep` and `groups`, which must outlive them; `seen` gets every axis key.
Dims sweep_dims(const SweepParts& s, Value::Array& groups, std::set<std::string>& seen) {
  Dims dims;
  auto add_dim = [&](std::vector<Axis> axes, const std::string& owner) {
    for (const auto& a : axes) {
      check_axis(a, owner);
      if (!seen.insert(a.key).second)
        throw ConfigError(a.list->where().str() + ": " + owner + ": '" + a.key + "' is varied twice in [sweep]");
    }
    dims.push_back(std::move(axes));
  };
  if (const Value* g = find_path(s.sweep, {"grid"})) {
    auto axes = axes_in_order(expect_table(*g, "sweep.grid"));
    auto rank = [&](const Axis& a) { return std::find(s.grid_order.begin(), s.grid_order.end(), a.key) - s.grid_order.begin(); };
    std::stable_sort(axes.begin(), axes.end(), [&](const Axis& a, const Axis& b) { return rank(a) < rank(b); });
    for (const auto& a : axes) add_dim({a}, "sweep.grid");
  }
  if (const Value* z = find_path(s.sweep, {"zip"})) {
    if (z->type() == ValueType::Table) groups = {*z};
    if (z->type() == ValueType::Array) groups = z->as_array();
    if (groups.empty())
      throw ConfigError(z->where().str() + ": sweep.zip: expected [[sweep.zip]] tables of equal-length lists");
    for (std::size_t g = 0; g < groups.size(); ++g) {
      std::string owner = "sweep.zip group " + std::to_string(g + 1);
      auto axes = axes_in_order(expect_table(groups[g], owner));
      check_zip_group(axes, groups[g], owner);
      add_dim(std::move(axes), owner);
    }
  }
  return dims;
}

/// A --set that an axis value or sweep.seeds would silently overrule is an error.
void check_overrides_apply(const SweepParts& s, bool seeds_given, const std::set<std::string>& varied) {
  for (const auto& [key, value] : s.base_overrides) {
    if (key == "run.seed" && seeds_given)
      throw ConfigError(
          "--set run.seed: sweep.seeds decides run.seed, so this override would have no effect; "
          "use e.g. --set 'sweep.seeds=[1]'");
    if (varied.count(key))
      throw ConfigError("--set " + key + ": the sweep varies '" + key +
                        "', so this override would have no effect; change [sweep] instead, e.g. --set 'sweep.grid.\"" +
                        key + "\"=[...]'");
  }
}

/// How many runs the dims and seeds expand to (at most kMaxRuns).
std::size_t run_count(const Dims& dims, std::size_t seeds, const std::string& file) {
  std::size_t total = seeds;
  for (const auto& d : dims) {
    std::size_t n = d[0].list->as_array().size();
    if (total > kMaxRuns / n)
      throw ConfigError(file + ": the sweep expands to more than " + std::to_string(kMaxRuns) + " runs");
    total *= n;
  }
  return total;
}

/// Run `index` of the expansion: mixed radix, last digit fastest: seeds, then zip groups, then
/// grid axes from the last.
RunSpec run_at(std::size_t index, const Value& base, const Dims& dims, const std::vector<Value>& seeds) {
  std::size_t rest = index;
  const Value& seed = seeds[rest % seeds.size()];
  rest /= seeds.size();
  std::vector<std::size_t> pick(dims.size());
  for (std::size_t d = dims.size(); d-- > 0;) {
    std::size_t n = dims[d][0].list->as_array().size();
    pick[d] = rest % n;
    rest /= n;
  }
  RunSpec run;
  run.index = static_cast<std::int64_t>(index);
  run.seed = seed.as_int();
  Value config = base;
  for (std::size_t d = 0; d < dims.size(); ++d)
    for (const auto& a : dims[d]) {
      const Value& v = a.list->as_array()[pick[d]];
      set_dotted(config, a.key, v);
      run.varied.emplace_back(a.key, v);
    }
  set_parts(config, {"run", "seed"}, seed);
  if (seeds.size() > 1) run.varied.emplace_back("run.seed", seed);
  run.run_id = run_id_of(config);
  run.config = std::make_shared<const Value>(std::move(config));
  return run;
}

/// The sweep's identity: file, folder, text, name and the keys its runs vary in.
Sweep sweep_header(const std::string& file, const std::string& text, const Value& base, const Dims& dims,
                   std::size_t seeds) {
  namespace fs = std::filesystem;
  Sweep out;
  fs::path abs = fs::absolute(fs::path(file)).lexically_normal();
  out.file = abs.string();
  out.dir = abs.parent_path().string();
  out.text = text;
  const Value* name = find_path(base, {"run", "name"});
  out.name = name && name->type() == ValueType::String ? name->as_string() : abs.stem().string();
  for (const auto& d : dims)
    for (const auto& a : d) out.varied_keys.push_back(a.key);
  if (seeds > 1) out.varied_keys.push_back("run.seed");
  return out;
}

}  // namespace

Sweep expand_sweep(const Value& root, const std::string& file, const std::string& text, const Overrides& overrides) {
  SweepParts s = sweep_parts(root, file, overrides);
  check_tables(s);
  normalize_population(s.base);
  Value::Array groups;  // outlives `dims`, whose zip axes point into it
  std::set<std::string> varied;
  const Dims dims = sweep_dims(s, groups, varied);
  const Value* seeds_value = find_path(s.sweep, {"seeds"});
  const std::vector<Value> seeds = seed_values(seeds_value, s.base);
  check_overrides_apply(s, seeds_value != nullptr, varied);

  Sweep out = sweep_header(file, text, s.base, dims, seeds.size());
  const std::size_t total = run_count(dims, seeds.size(), file);
  std::map<std::string, std::size_t> ids;
  for (std::size_t index = 0; index < total; ++index) {
    RunSpec run = run_at(index, s.base, dims, seeds);
    auto [it, fresh] = ids.emplace(run.run_id, index);
    if (!fresh)
      throw ConfigError(file + ": runs #" + std::to_string(it->second) + " and #" + std::to_string(index) +
                        " resolve to the same config (run id " + run.run_id + "); check the sweep for repeated values");
    out.runs.push_back(std::move(run));
  }
  return out;
}

std::string canonical_text(const Value& config) {
  if (config.type() != ValueType::Table) return config.literal();
  std::ostringstream os;
  emit_table(config.as_table(), "", os);
  return os.str();
}

std::string run_id_of(const Value& config) {
  // `run.population` says how a run is scheduled, not what it computes: a run trained in a
  // population has the id (and the file) of its solo run.
  if (config.type() == ValueType::Table) {
    auto root = config.as_table();
    auto run = root.find("run");
    if (run != root.end() && run->second.type() == ValueType::Table && run->second.as_table().count("population")) {
      auto table = run->second.as_table();
      table.erase("population");
      run->second = Value::table(std::move(table), run->second.where());
      return sha256_hex(canonical_text(Value::table(std::move(root), config.where()))).substr(0, 12);
    }
  }
  return sha256_hex(canonical_text(config)).substr(0, 12);
}

std::string sha256_hex(const std::string& data) {
  static const std::uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  auto rotr = [](std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };

  // padding: 0x80, zeros to 56 mod 64, then the bit length big-endian
  std::string msg = data;
  std::uint64_t bits = static_cast<std::uint64_t>(data.size()) * 8;
  msg += static_cast<char>(0x80);
  while (msg.size() % 64 != 56) msg += '\0';
  for (int i = 7; i >= 0; --i) msg += static_cast<char>((bits >> (8 * i)) & 0xff);

  for (std::size_t block = 0; block < msg.size(); block += 64) {
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = 0;
      for (int j = 0; j < 4; ++j) w[i] = (w[i] << 8) | static_cast<unsigned char>(msg[block + 4 * i + j]);
    }
    for (int i = 16; i < 64; ++i) {
      std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, hh] = h;
    for (int i = 0; i < 64; ++i) {
      std::uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    std::array<std::uint32_t, 8> add = {a, b, c, d, e, f, g, hh};
    for (int i = 0; i < 8; ++i) h[i] += add[i];
  }
  std::string hex;
  char buf[9];
  for (auto x : h) {
    std::snprintf(buf, sizeof buf, "%08x", x);
    hex += buf;
  }
  return hex;
}

std::string format_expansion(const Sweep& sweep) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"#", "run_id", "seed"};
  for (const auto& k : sweep.varied_keys)
    if (k != "run.seed") header.push_back(k);
  rows.push_back(header);
  for (const auto& run : sweep.runs) {
    std::vector<std::string> row = {std::to_string(run.index), run.run_id, std::to_string(run.seed)};
    for (const auto& [k, v] : run.varied)
      if (k != "run.seed") row.push_back(v.literal());
    rows.push_back(std::move(row));
  }
  std::vector<std::size_t> width(header.size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace modlab::runner
