// Sweep files: TOML text -> parsed tree -> --set overrides -> expanded runs -> run ids and the
// `modlab expand` table. Input: the sweep text, optionally followed by a line "%%" and one
// override per line (as given to --set).
#include "fuzz_util.hpp"

#include <modlab/runner/sweep.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace {

void split_input(const std::string& in, std::string& text, std::vector<std::string>& overrides) {
  const std::size_t cut = in.find("\n%%\n");
  text = in.substr(0, cut);
  if (cut == std::string::npos) return;
  std::size_t pos = cut + 4;
  while (pos <= in.size() && overrides.size() < 8) {
    std::size_t nl = in.find('\n', pos);
    if (nl == std::string::npos) nl = in.size();
    overrides.push_back(in.substr(pos, nl - pos));
    pos = nl + 1;
  }
}

// A run file stores its config as canonical_text; `modlab verify` and resume parse it back and
// compare its run id with the file's name. Any config a sweep can produce must survive that trip.
void check_round_trip(const modlab::runner::RunSpec& run) {
  using namespace modlab::runner;
  const std::string text = canonical_text(*run.config);
  std::string again;
  try {
    again = run_id_of(parse_toml(text, "canonical"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: the canonical text of run %s does not parse: %s\n%s\n", run.run_id.c_str(), e.what(),
                 text.c_str());
    std::abort();
  }
  if (again != run.run_id || run_id_of(*run.config) != run.run_id) {
    std::fprintf(stderr, "fuzz: run %s reads back as %s from\n%s\n", run.run_id.c_str(), again.c_str(), text.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace modlab::runner;
  using modlab::Value;
  std::string text;
  std::vector<std::string> lines;
  split_input(std::string(reinterpret_cast<const char*>(data), size), text, lines);
  modlab::fuzz::expect_only_modlab_errors([&] {
    std::vector<std::pair<std::string, Value>> overrides;
    for (const auto& l : lines) overrides.push_back(parse_override(l));
    const Value root = parse_toml(text, "fuzz.toml");
    const Sweep sweep = expand_sweep(root, "fuzz.toml", text, overrides);
    for (const auto& run : sweep.runs) check_round_trip(run);
    (void)format_expansion(sweep);
  });
  return 0;
}
