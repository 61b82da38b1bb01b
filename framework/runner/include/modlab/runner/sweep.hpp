#pragma once
// Sweep files: TOML parsing into modlab::Value trees (with file:line:column on every value) and
// expansion of `[sweep]` into runs.

#include <modlab/config.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace modlab::runner {

/// One run of a sweep.
struct RunSpec {
  std::string run_id;   ///< 12 hex digits: hash of the canonical resolved config
  std::int64_t index = 0;  ///< position in the sweep (expansion order)
  std::int64_t seed = 0;   ///< also stored at run.seed in `config`
  std::shared_ptr<const Value> config;  ///< resolved: [run] [dataset] [model] [train] (no [sweep])
  std::vector<std::pair<std::string, Value>> varied;  ///< dotted key → value this run takes ("run.seed" included)
};

/// An expanded sweep.
struct Sweep {
  std::string name;       ///< run.name, or the file's stem
  std::string file;       ///< absolute path of the sweep file
  std::string dir;        ///< its folder (relative paths in the file resolve here)
  std::string text;       ///< the file's text
  std::vector<std::string> varied_keys;  ///< dotted keys that vary across runs, in axis order
  std::vector<RunSpec> runs;
};

/// Parses TOML text; ConfigError "file:line:column: <parser message>" on malformed input.
Value parse_toml(const std::string& text, const std::string& file_name);
/// Reads and parses a file; ConfigError naming the file when it cannot be read.
Value parse_toml_file(const std::string& path);

/// Parses one `--set key=value` override: the value is read as a TOML value (`3`, `0.1`, `"adam"`,
/// `[1,2]`, `true`); a bare word that is not valid TOML is taken as a string.
std::pair<std::string, Value> parse_override(const std::string& text);

/// Expands a parsed sweep file. Base run = every top-level table except [sweep]. `[sweep]` may hold
///   grid  = { "model.num_experts" = [1, 2, 4], ... }   cartesian product, last key varies fastest
///   [[sweep.zip]] / zip = [ { "a" = [..], "b" = [..] }, ... ]   each group varies together (equal lengths)
///   seeds = [0, 1, 2]   (or an integer n meaning 0..n-1); seeds vary fastest of all
/// Order: grid axes (outermost first), then zip groups, then seeds. Overrides are applied to the base
/// before expansion and may also replace a sweep axis ("sweep.seeds=[3]"). Throws ConfigError for an
/// empty axis, zip lists of different lengths, an axis key that is not a dotted key into a table, an
/// unknown key under [sweep], a --set of a key the sweep varies (it would have no effect), or two runs
/// with the same run id. Grid axes are ordered by the (line, column) of their value lists; axes added
/// by a --set follow the file's axes. Overrides are passed as parse_override() returns them.
Sweep expand_sweep(const Value& root, const std::string& file, const std::string& text,
                   const std::vector<std::pair<std::string, Value>>& overrides = {});
/// parse_toml_file + expand_sweep.
Sweep load_sweep(const std::string& path, const std::vector<std::string>& overrides = {});

/// Canonical TOML-like text of a config tree: tables sorted by key, scalars and arrays before
/// sub-tables, floats with round-trip precision. Used for run ids, so it must not depend on source
/// order or locations.
std::string canonical_text(const Value& config);

/// Run id of a resolved config: the first 12 hex digits of SHA-256 over `canonical_text(config)`
/// without `run.population` (how a run is scheduled, not what it computes).
std::string run_id_of(const Value& config);

/// Sets `dotted` (creating tables on the way) in `table`; ConfigError if a non-table is in the way.
void set_dotted(Value& table, const std::string& dotted, Value value);

/// Splits a dotted key into its parts; a quoted part may hold dots (`sweep.grid."model.lr"` →
/// sweep, grid, model.lr). ConfigError on an empty part or an unterminated quote.
std::vector<std::string> split_dotted(const std::string& dotted);

/// SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256_hex(const std::string& data);

/// The runs as an aligned text table, one header line then one line per run:
/// `#  run_id  seed  <each varied key but run.seed>`; values are TOML literals, columns are
/// left-aligned and separated by two spaces, lines carry no trailing blanks. Used by `modlab expand`.
std::string format_expansion(const Sweep& sweep);

}  // namespace modlab::runner
