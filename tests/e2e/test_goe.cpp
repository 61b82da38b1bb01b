// goe through the CLI: the committed smoke sweep end to end (router trained once and reused,
// routing tables, costs, random-routing accuracy in the run files), and the errors a user sees
// before anything runs.
#define BOOST_TEST_MODULE goe_e2e
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <cstdlib>
#include <map>

using namespace e2e;

namespace {

bool have_mnist() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return d && (fs::exists(fs::path(d) / "mnist" / "train-images-idx3-ubyte") ||
               fs::exists(fs::path(d) / "mnist" / "train-images-idx3-ubyte.gz"));
}

/// The value of row `row` of the one-column table `name` of a run file.
double table_value(const fs::path& file, const std::string& name, const std::string& row) {
  for (const auto& t : modlab::runner::read_run_tables(file.string()))
    if (t.name == name)
      for (std::size_t i = 0; i < t.rows.size(); ++i)
        if (t.rows[i] == row) return t.values[i * t.columns.size()];
  return -1.0;
}

bool has_table(const fs::path& file, const std::string& name) {
  for (const auto& t : modlab::runner::read_run_tables(file.string()))
    if (t.name == name) return true;
  return false;
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_smoke_sweep_trains_the_router_once_and_records_routing_and_costs) {
  if (!have_mnist()) {
    BOOST_TEST_MESSAGE("skipped: MNIST not found under $MODLAB_DATA_DIR/mnist (see ../shared/data/README.md)");
    return;
  }
  TempDir d("goe_smoke");
  const auto out = d.path / "out";
  const auto sweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/goe/smoke.toml";
  auto r = run_modlab("run " + quote(sweep) + " --jobs 2 --out " + quote(out.string()));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  const auto runs = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST_REQUIRE(runs.size() == 6u);
  int trained = 0, reused = 0;
  for (const auto& run : runs) {
    BOOST_TEST_CONTEXT("run " << run.index << " " << run.params.at("model.network") << "/" << run.params.at("model.router")) {
      BOOST_TEST_REQUIRE(run.status == "completed", run.error);
      const auto file = out / run.file;
      const auto p = std::stoll(run.params.at("model.param_factor"));
      BOOST_TEST(table_value(file, "cost", "macs") == double(3920 * p * p + 7096 * p));
      const bool tree = run.params.at("model.network") == "\"tree\"";
      const auto& m = run.final_metrics;
      BOOST_TEST(m.count("test_accuracy") == 1u);
      BOOST_TEST(m.count("test_random_routing_accuracy") == (tree ? 1u : 0u));
      BOOST_TEST(has_table(file, "test/routing_vs_group") == tree);
      if (run.params.at("model.router") != "\"latent\"" || !tree) continue;
      BOOST_TEST(m.count("test_vq_perplexity") == 1u);
      BOOST_TEST(table_value(file, "cost", "router_train_updates") == 200.0);
      BOOST_TEST(table_value(file, "cost", "macs_with_router") > table_value(file, "cost", "macs"));
      (table_value(file, "cost", "router_reused") == 1.0 ? reused : trained) += 1;
    }
  }
  // One VQ-VAE for seed 0, shared by p = 2 and p = 4.
  BOOST_TEST(trained == 1);
  BOOST_TEST(reused == 1);
  int shared = 0;
  for (const auto& e : fs::directory_iterator(out / "shared"))
    shared += e.path().extension().empty() && e.path().filename().string().rfind("goe_router-", 0) == 0;
  BOOST_TEST(shared == 1);
  r = run_modlab("show " + quote(out.string()) + " --tables");
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  for (const char* want : {"routing_vs_group", "macs_with_router", "router_reused"})
    BOOST_TEST(r.output.find(want) != std::string::npos, "show --tables lacks '" << want << "'");
  if (!has_python_h5py()) return;
  // The results page and its figures, as docs/results/goe.md is made.
  const auto fig = d.path / "figures", doc = d.path / "goe.md";
  const auto p = sh("/usr/bin/python3 " + quote(std::string(MODLAB_TEST_SOURCE_DIR) + "/../scripts/plot_goe.py") + " " +
                    quote(out.string()) + " --figures " + quote(fig.string()) + " --doc " + quote(doc.string()) +
                    " --with-header --command 'modlab run sweeps/goe/smoke.toml --jobs 2'");
  BOOST_TEST_REQUIRE(p.code == 0, p.output);
  const auto page = slurp(doc);
  for (const char* want : {"| goe_oracle | 4 | 1 |", "| ref_sqB | 2 | 1 | 1,762 | 29,872 |", "VQ-VAEs trained: 1",
                           "reused by the other 1 latent runs", "modlab run sweeps/goe/smoke.toml --jobs 2"})
    BOOST_TEST(page.find(want) != std::string::npos, "page lacks '" << want << "'");
  for (const char* png : {"goe_smoke_accuracy.png", "goe_smoke_routing.png", "goe_smoke_vqvae.png"})
    BOOST_TEST(fs::file_size(fig / png) > 1000u, png);
}

BOOST_AUTO_TEST_CASE(bad_goe_values_stop_the_sweep_before_it_starts) {
  TempDir d("goe_bad");
  write(d.path / "s.toml", "[dataset]\nplugin = \"rotated_mnist\"\n[model]\nplugin = \"goe\"\ndepth = 9\n");
  auto r = run_modlab("run " + quote((d.path / "s.toml").string()) + " --out " + quote((d.path / "o").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("s.toml:5:9: model.depth: expected an integer in [0, 8], got 9") != std::string::npos, r.output);
  BOOST_TEST(!fs::exists(d.path / "o" / "runs"));
  write(d.path / "t.toml", "[dataset]\nplugin = \"rotated_mnist\"\n[model]\nplugin = \"goe\"\nrouter = \"oracel\"\n");
  r = run_modlab("run " + quote((d.path / "t.toml").string()) + " --out " + quote((d.path / "o").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("\"oracle\"") != std::string::npos, r.output);
  if (!have_mnist()) return;
  // Checked against the dataset itself, once, before any run: plain MNIST has no group ids.
  write(d.path / "u.toml", "[dataset]\nplugin = \"rotated_mnist\"\nmode = \"plain\"\n[model]\nplugin = \"goe\"\n"
                           "[sweep]\nseeds = 3\n");
  r = run_modlab("run " + quote((d.path / "u.toml").string()) + " --out " + quote((d.path / "o").string()));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("model.router: router \"oracle\" routes by the dataset's group ids, and dataset "
                           "rotated_mnist/mnist/plain has none") != std::string::npos,
             r.output);
  BOOST_TEST(!fs::exists(d.path / "o" / "runs"));
}
