// masked_analyzer through the CLI: the committed smoke sweep end to end (every stage, masks and
// tables in the run files, `modlab show --tables`), an analysis of an earlier run's weights, and a
// weight file of another architecture refused with the parameters that do not fit.
#define BOOST_TEST_MODULE masked
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <cmath>
#include <set>

using namespace e2e;

namespace {

std::string small_tuple(const std::string& name, const std::string& model) {
  return "[run]\nname = \"" + name + "\"\n[dataset]\nplugin = \"tuple_rnn\"\ntrain_size = 3000\nvalid_size = 500\n"
         "test_size = 500\n" + model +
         "[train]\nbatch_size = 64\nepochs = 2\nsteps_per_epoch = 20\neval_splits = [\"valid\"]\n" +
         // the mask phase exists only when the analyzer wraps the model: a plain model has no such phase
         (model.find("masked_analyzer") != std::string::npos ? "[train.phases.mask]\nlr = 0.01\nepochs = 1\nsteps_per_epoch = 20\n" : "") +
         "[sweep]\nseeds = [0]\n";
}

const std::string kFnn = "plugin = \"mask_fnn\"\nlayer_sizes = [32]\nrun_per_subtask = true\n";

}  // namespace

BOOST_AUTO_TEST_CASE(the_smoke_sweep_runs_every_stage_and_writes_masks_and_tables) {
  TempDir d("masked_smoke");
  const auto sweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/masked/smoke.toml";
  auto r = run_modlab("run " + quote(sweep) + " --jobs 2 --out " + quote((d.path / "out").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto runs = modlab::runner::read_sweep_index((d.path / "out").string());
  BOOST_TEST_REQUIRE(runs.size() == 2u);
  for (const auto& run : runs) {
    BOOST_TEST_REQUIRE(run.status == "completed", run.error);
    std::set<std::string> names;
    for (const auto& t : modlab::runner::read_run_tables((d.path / "out" / run.file).string())) {
      names.insert(t.name);
      for (double v : t.values) BOOST_TEST((std::isnan(v) || (v >= 0.0 && v <= 1.0)), t.name);
    }
    for (const char* want : {"valid/accuracy", "kept", "iou", "iomin", "shared", "control_kept"})
      BOOST_TEST(names.count(want) == 1u, "run " << run.index << " lacks table " << want);
    BOOST_TEST(names.count("valid/confusion") == (run.index == 1 ? 1u : 0u), "add/mul only");
  }
  r = run_modlab("show " + quote((d.path / "out").string()) + " --tables");
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  for (const char* want : {"valid/accuracy", "inverse pair1", "inverse mul", "= add", "half first", "pair1 ~ pair2"})
    BOOST_TEST(r.output.find(want) != std::string::npos, "show --tables lacks '" << want << "'");
}

BOOST_AUTO_TEST_CASE(an_earlier_run_is_analysed_and_another_architecture_is_refused) {
  TempDir d("masked_load");
  write(d.path / "a.toml", small_tuple("a", "[model]\n" + kFnn));
  write(d.path / "b.toml", small_tuple("b", "[model]\nplugin = \"masked_analyzer\"\ninner_weights = \"a_out/same-seed\"\n"
                                            "[model.inner]\n" + kFnn));
  write(d.path / "c.toml", small_tuple("c", "[model]\nplugin = \"masked_analyzer\"\ninner_weights = \"a_out/same-seed\"\n"
                                            "[model.inner]\nplugin = \"mask_fnn\"\nlayer_sizes = [16]\n"));
  auto r = run_modlab("run " + quote((d.path / "a.toml").string()) + " --out " + quote((d.path / "a_out").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  r = run_modlab("run " + quote((d.path / "b.toml").string()) + " --out " + quote((d.path / "b_out").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto b = modlab::runner::read_sweep_index((d.path / "b_out").string());
  BOOST_TEST_REQUIRE(b.size() == 1u);
  // only mask phases ran: the loaded network was not trained again
  const auto phases = sh("/usr/bin/python3 -c " +
                         quote("import h5py,sys; m=h5py.File(sys.argv[1])['metrics']; n=list(m['phase'].attrs['phase_names']);"
                               "print(sorted(set(n[c] for c in m['phase'][()])))") +
                         " " + quote((d.path / "b_out" / b[0].file).string()));
  BOOST_TEST(phases.output.find("['mask_full', 'mask_pair1', 'mask_pair2']") != std::string::npos, phases.output);
  // weights of another architecture: refused before the run starts (the model is built once to
  // check its phase table), naming the model table and the parameters that do not fit
  r = run_modlab("run " + quote((d.path / "c.toml").string()) + " --out " + quote((d.path / "c_out").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("c.toml:") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("model.inner_weights: run 'a_out/same-seed'") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("layers0.weight") != std::string::npos, r.output);
  BOOST_TEST(!fs::exists(d.path / "c_out"));
}

BOOST_AUTO_TEST_CASE(bad_analyzer_values_stop_the_sweep_before_it_starts) {
  TempDir d("masked_bad");
  write(d.path / "t.toml", small_tuple("t", "[model]\nplugin = \"masked_analyzer\"\ntemperature = 0.0\n[model.inner]\n" + kFnn));
  auto r = run_modlab("run " + quote((d.path / "t.toml").string()) + " --out " + quote((d.path / "out").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("t.toml:") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("model.temperature") != std::string::npos, r.output);
  BOOST_TEST(!fs::exists(d.path / "out" / "runs"));
}
