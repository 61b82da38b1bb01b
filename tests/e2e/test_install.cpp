// modlab installed as a user installs it: `cmake --install` into a prefix that is then moved (so
// nothing may point back at the build tree or the first prefix), an out-of-tree project
// (tests/consumer: a dataset plugin and the model of docs/writing-a-model.md) built against that
// prefix with find_package(modlab), and its plugins trained by the installed executable.
#define BOOST_TEST_MODULE install_e2e
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

using namespace e2e;

namespace {

/// A command with the test's own plugin path and library path out of the environment, as a user's
/// shell would run it.
Result clean_sh(const std::string& cmd) { return sh("env -u MODLAB_PLUGIN_PATH -u LD_LIBRARY_PATH " + cmd); }

/// `cmd` run in folder `dir` by a clean shell.
Result clean_sh_in(const fs::path& dir, const std::string& cmd) {
  return clean_sh("bash -c " + quote("cd " + quote(dir.string()) + " && " + cmd));
}

/// Installs the build tree into `staged`, then moves it to `prefix`.
void install_moved(const fs::path& staged, const fs::path& prefix) {
  auto r = sh("cmake --install " + quote(MODLAB_BINARY_DIR) + " --prefix " + quote(staged.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  fs::rename(staged, prefix);
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_installed_prefix_runs_after_a_move_and_trains_out_of_tree_plugins) {
  TempDir d("install");
  const fs::path prefix = d.path / "moved";
  install_moved(d.path / "staged", prefix);
  const std::string modlab = quote((prefix / "bin" / "modlab").string());

  auto r = clean_sh(modlab + " --version");
  BOOST_TEST_REQUIRE(r.code == 0, r.output);  // libmodlab_sdk found through the relative rpath
  r = clean_sh(modlab + " plugins");
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  BOOST_TEST(r.output.find("model moe ") != std::string::npos, r.output);
  BOOST_TEST(r.output.find((prefix / "lib").string()) != std::string::npos, r.output);  // its own plugins
  BOOST_TEST(r.output.find(MODLAB_BINARY_DIR) == std::string::npos, r.output);
  r = sh("grep -c -F " + quote(MODLAB_BINARY_DIR) + " " + modlab);
  BOOST_TEST(r.output == "0\n", "the installed executable names the build tree");

  const fs::path build = d.path / "consumer";
  r = clean_sh("cmake -S " + quote(MODLAB_TEST_SOURCE_DIR "/consumer") + " -B " + quote(build.string()) +
               " -G Ninja -DMODLAB_WERROR=ON -DCMAKE_PREFIX_PATH=" + quote(prefix.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  r = clean_sh("cmake --build " + quote(build.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);

  const fs::path out = d.path / "out";
  r = clean_sh(modlab + " run " + quote(MODLAB_TEST_SOURCE_DIR "/consumer/sweep.toml") + " --jobs 2 --plugin-path " +
               quote((build / "plugins").string()) + " --out " + quote(out.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto runs = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(runs.size() == 2u);
  for (const auto& run : runs) {
    BOOST_TEST_REQUIRE(run.status == "completed", run.error);
    BOOST_TEST(run.final_metrics.at("test_accuracy") > 0.9);  // stripes are easy: it learned
    const auto s = modlab::runner::read_run_summary((out / run.file).string());
    BOOST_TEST_REQUIRE(s.has_value());
    BOOST_TEST(s->config.find("plugin = \"stripes\"") != std::string::npos, s->config);
  }
}

// `modlab new-plugin` as a plugin author uses it with an installed modlab: a model and a dataset
// plugin written, built against the prefix, trained by the sweeps that come with them, and checked
// by the plugin contract test like modlab's own plugins.
BOOST_AUTO_TEST_CASE(new_plugin_folders_build_train_and_keep_the_contract) {
  TempDir d("new_plugin");
  const fs::path prefix = d.path / "prefix";
  install_moved(d.path / "staged", prefix);
  const std::string modlab = quote((prefix / "bin" / "modlab").string());
  std::string plugin_path;
  for (const auto& [name, kind] : {std::pair{"my_net", "model"}, std::pair{"my_spirals", "dataset"}}) {
    BOOST_TEST_CONTEXT(kind) {
      const fs::path dir = d.path / name;
      auto r = clean_sh_in(d.path, modlab + " new-plugin " + name + " --kind " + kind);
      BOOST_TEST_REQUIRE(r.code == 0, r.output);
      BOOST_TEST(r.output.find("-DCMAKE_PREFIX_PATH=" + fs::canonical(prefix).string()) != std::string::npos, r.output);
      r = clean_sh("cmake -S " + quote(dir.string()) + " -B " + quote((dir / "build").string()) +
                   " -G Ninja -DMODLAB_WERROR=ON -DCMAKE_PREFIX_PATH=" + quote(prefix.string()) + " && cmake --build " +
                   quote((dir / "build").string()));
      BOOST_TEST_REQUIRE(r.code == 0, r.output);
      const fs::path out = dir / "results";
      r = clean_sh_in(dir, modlab + " run sweep.toml --jobs 2 --plugin-path build/plugins --out results");
      BOOST_TEST_REQUIRE(r.code == 0, r.output);
      for (const auto& run : modlab::runner::read_sweep_index(out.string())) {
        BOOST_TEST_REQUIRE(run.status == "completed", run.error);
        BOOST_TEST(run.final_metrics.at("test_accuracy") > 0.6, "it learned: " << run.final_metrics.at("test_accuracy"));
      }
      plugin_path += (plugin_path.empty() ? "" : ":") + (dir / "build" / "plugins").string();
    }
  }
  // A name that is not an identifier, and a folder that is taken, are refused before writing.
  auto r = clean_sh_in(d.path, modlab + " new-plugin My-Net --kind model");
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("must start with a lower-case letter") != std::string::npos, r.output);
  r = clean_sh_in(d.path, modlab + " new-plugin my_net --kind model");
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("exists and is not an empty folder") != std::string::npos, r.output);

  r = sh("MODLAB_PLUGIN_PATH=" + quote(plugin_path) + " MODLAB_CONTRACT_PLUGINS=my_net,my_spirals " +
         quote(std::string(MODLAB_BINARY_DIR) + "/tests/plugin_test_contract"));
  BOOST_TEST(r.code == 0, r.output);
  BOOST_TEST(r.output.find("No errors detected") != std::string::npos, r.output);
}
