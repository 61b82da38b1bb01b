// Opening dm_math: parsing the text of the release (no cache), the first open (parse and write the
// cache) and a later open (memory-map the cache), on the generated modules of the shared data folder
// (5 modules × 5 folders, 105,680 question/answer pairs). Each row is the fastest of `--repeat`
// opens; the ratio is against the cached open measured in the same run.
//
//   MODLAB_DATA_DIR=../shared/data build/bin/bench_dm_math [--root DIR] [--repeat 3]
#include "bench_util.hpp"

#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/remove_tree.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>

namespace fs = std::filesystem;

namespace {

double open_seconds(modlab::runner::RunHost& host, const std::string& toml, std::int64_t* pairs) {
  const modlab::Config c(std::make_shared<const modlab::Value>(modlab::runner::parse_toml(toml, "bench")), "dataset");
  const auto t0 = std::chrono::steady_clock::now();
  auto d = host.create_dataset("dm_math", c);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *pairs = 0;
  for (const auto& name : d->spec().splits)
    if (name.rfind("train_", 0) != 0) *pairs += d->split(name)->size();
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* data = std::getenv("MODLAB_DATA_DIR");
  std::string root = (fs::path(data ? data : "../shared/data") / "dm_math/generated").string();
  int repeat = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--root") root = argv[i + 1];
    if (std::string(argv[i]) == "--repeat") repeat = std::stoi(argv[i + 1]);
  }
  const fs::path cache = fs::temp_directory_path() / ("modlab_bench_dm_math_" + std::to_string(::getpid()));
  modlab::runner::HostOptions ho;
  ho.logger = [](const std::string&) {};
  modlab::runner::RunHost host(modlab::runner::default_registry(), ho);
  const std::string base = "plugin = \"dm_math\"\nroot = \"" + root + "\"\nmodules = [\"*\"]\ntest_size = 1000\n";
  std::int64_t pairs = 0;
  double parse = 1e9, first = 1e9, mapped = 1e9;
  for (int r = 0; r < repeat; ++r) {
    parse = std::min(parse, open_seconds(host, base + "cache = false\n", &pairs));
    modlab::runner::remove_tree(cache);
    first = std::min(first, open_seconds(host, base + "cache_dir = \"" + cache.string() + "\"\n", &pairs));
    mapped = std::min(mapped, open_seconds(host, base + "cache_dir = \"" + cache.string() + "\"\n", &pairs));
  }
  std::uintmax_t bytes = 0;
  for (const auto& e : fs::directory_iterator(cache)) bytes += fs::file_size(e.path());
  modlab::runner::remove_tree(cache);
  std::cout << "dm_math open, " << root << ": " << pairs << " question/answer pairs, cache " << bytes
            << " bytes; fastest of " << repeat << "\n\n";
  bench::table({"open", "seconds", "pairs per second", "× the cached open"},
               {{"parse the text (cache = false)", bench::fixed(parse, 4), bench::fixed(pairs / parse, 0), bench::fixed(parse / mapped, 1)},
                {"first open: parse and write the cache", bench::fixed(first, 4), bench::fixed(pairs / first, 0), bench::fixed(first / mapped, 1)},
                {"later open: map the cache", bench::fixed(mapped, 4), bench::fixed(pairs / mapped, 0), "1.0"}});
  return 0;
}
