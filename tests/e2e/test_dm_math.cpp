// dm_math through the CLI: the committed smoke sweep end to end (the generated module read through
// the cache, the Transformer trained, the control and easy masks, the tables and metrics in the run
// file, the results page), and a module that does not exist.
#define BOOST_TEST_MODULE dm_math_e2e
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <cstdlib>
#include <set>

using namespace e2e;

namespace {
bool have_dm_math() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return d && fs::exists(fs::path(d) / "dm_math/generated/train-easy/arithmetic__add_or_sub.txt");
}
}  // namespace

BOOST_AUTO_TEST_CASE(the_smoke_sweep_trains_the_transformer_and_both_masks) {
  if (!have_dm_math()) {
    BOOST_TEST_MESSAGE("skipped: $MODLAB_DATA_DIR/dm_math/generated not found (see ../shared/data/README.md)");
    return;
  }
  TempDir d("dm_math_smoke");
  const auto out = d.path / "out";
  const auto sweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/dm_math/smoke.toml";
  auto r = run_modlab("run " + quote(sweep) + " --jobs 2 --out " + quote(out.string()) + " --set " +
                      quote("dataset.cache_dir=" + (d.path / "cache").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto runs = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST_REQUIRE(runs[0].status == "completed", runs[0].error);
  BOOST_TEST(runs[0].final_metrics.count("test_hard_char_accuracy") == 1u);
  std::set<std::string> rows;
  for (const auto& t : modlab::runner::read_run_tables((out / runs[0].file).string()))
    if (t.name == "test_hard/accuracy") rows.insert(t.rows.begin(), t.rows.end());
  for (const char* want : {"trained", "mask full", "mask easy", "inverse easy"})
    BOOST_TEST(rows.count(want) == 1u, "test_hard/accuracy lacks row " << want);
  BOOST_TEST(fs::exists(d.path / "cache"));  // the token cache was written where the sweep said
  if (!has_python_h5py()) return;
  const auto page = d.path / "dm_math.md";
  const auto p = sh("/usr/bin/python3 " + quote(std::string(MODLAB_TEST_SOURCE_DIR) + "/../scripts/plot_dm_math.py") + " " +
                    quote(out.string()) + " --doc " + quote(page.string()) + " --with-header");
  BOOST_TEST_REQUIRE(p.code == 0, p.output);
  const auto md = slurp(page);
  BOOST_TEST(md.find("d=32, 2 heads, 1+1 layers, 300 training steps, 50 steps per mask, α = 2e-05") != std::string::npos, md);
  BOOST_TEST(md.find("| test_hard | ") != std::string::npos, md);
  BOOST_TEST(md.find("Differs from the reference: dim 32 (reference 512)") != std::string::npos, md);
}

BOOST_AUTO_TEST_CASE(a_module_that_does_not_exist_is_named_with_the_ones_that_do) {
  if (!have_dm_math()) return;
  TempDir d("dm_math_bad");
  const auto sweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/dm_math/smoke.toml";
  auto r = run_modlab("run " + quote(sweep) + " --out " + quote((d.path / "o").string()) + " --set " +
                      quote("dataset.modules=[\"arithmetic__add_or_subb\"]"));
  // Found before any run starts: the dataset is built once at preflight.
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("dataset.modules: 'arithmetic__add_or_subb' matches no module") != std::string::npos, r.output);
  BOOST_TEST(r.output.find("comparison__sort") != std::string::npos, r.output);
  BOOST_TEST(!fs::exists(d.path / "o" / "runs"));
  // So is an answer longer than the model takes.
  r = run_modlab("run " + quote(sweep) + " --out " + quote((d.path / "o").string()) + " --set " +
                 quote("model.inner.max_length=20") + " --set " + quote("dataset.cache_dir=" + (d.path / "cache").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("model.inner.max_length: dataset dm_math/arithmetic__add_or_sub has max_question_length") !=
                 std::string::npos,
             r.output);
  BOOST_TEST(!fs::exists(d.path / "o" / "runs"));
}

BOOST_AUTO_TEST_CASE(the_real_v1_lines_go_through_every_stage) {
  const char* data = std::getenv("MODLAB_DATA_DIR");
  if (!data || !fs::exists(fs::path(data) / "dm_math/mathematics_dataset-v1.0/train-easy")) {
    BOOST_TEST_MESSAGE("skipped: $MODLAB_DATA_DIR/dm_math/mathematics_dataset-v1.0 not found");
    return;
  }
  TempDir d("dm_math_v1");
  const auto out = d.path / "out";
  const auto sweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/dm_math/smoke_v1.toml";
  auto r = run_modlab("run " + quote(sweep) + " --out " + quote(out.string()) + " --set " +
                      quote("dataset.cache_dir=" + (d.path / "cache").string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto runs = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(runs.size() == 1u);
  BOOST_TEST_REQUIRE(runs[0].status == "completed", runs[0].error);
  const double acc = runs[0].final_metrics.at("test_hard_accuracy");
  BOOST_TEST((acc >= 0.0 && acc <= 1.0));
  if (!has_python_h5py()) return;
  // Every module of the release was read: 56 modules; test_size = 2 items held out of train-hard.
  const auto info = sh("/usr/bin/python3 -c " +
                       quote("import h5py,sys; a=h5py.File(sys.argv[1],'r').attrs; "
                             "print(len(a['note.dataset.modules'].split(',')), a['note.dataset.test_hard_size'])") +
                       " " + quote((out / runs[0].file).string()));
  BOOST_TEST(info.output == "56 2\n", info.output);
}
