// A staged experiment through the CLI, as moe's MNIST (XAI) Exp. 2 runs it: experts pre-trained on
// their own classes, then a gate trained over those (prechosen) experts, then the learned gate
// reused with new experts; each stage refers to the previous stage's run of the same seed.
#define BOOST_TEST_MODULE staged
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <map>

using namespace e2e;

namespace {

std::string stage(const std::string& name, const std::string& extra) {
  return "[run]\nname = \"" + name + "\"\n[dataset]\nplugin = \"toy\"\ntask = \"multi_class\"\n"
         "[model]\nplugin = \"moe\"\nnum_experts = 3\nexpert = \"linear\"\ngate = \"linear\"\n"
         "expert_classes = [[0, 1], [2, 3], [4, 5]]\nexpert_init_seed = 7\n" +
         extra +
         "[train]\nepochs = 4\nbatch_size = 32\noptimizer = \"rmsprop\"\nlr = 0.01\nmomentum = 0.9\n"
         "eval_splits = [\"test\"]\n[sweep]\nseeds = [0, 1]\n";
}

/// run id → seed of the completed runs in `out`.
std::map<std::string, std::int64_t> completed(const fs::path& out) {
  std::map<std::string, std::int64_t> m;
  for (const auto& r : modlab::runner::read_sweep_index(out.string()))
    if (r.status == "completed") m[r.run_id] = r.seed;
  return m;
}

/// Parameter `module.layer0.name` from a run's final weights.
torch::Tensor weight(const fs::path& out, const std::string& run_id, const std::string& module, const std::string& name) {
  torch::serialize::InputArchive whole, part, layer;
  whole.load_from((out / "runs" / (run_id + ".weights.pt")).string());
  whole.read(module, part);
  part.read("layer0", layer);
  torch::Tensor t;
  layer.read(name, t);
  return t;
}

std::string id_with_seed(const std::map<std::string, std::int64_t>& runs, std::int64_t seed) {
  for (const auto& [id, s] : runs)
    if (s == seed) return id;
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(pretrain_experts_then_gate_then_reuse_the_gate) {
  TempDir d("staged");
  write(d.path / "a.toml", stage("a", "expert_objective = \"own_classes\"\ntrain_parts = \"experts\"\n"));
  write(d.path / "b.toml", stage("b", "init_experts_from = \"a_out/same-seed\"\ntrain_parts = \"gate\"\n"));
  write(d.path / "c.toml", stage("c", "init_gate_from = \"b_out/same-seed\"\ntrain_parts = \"experts\"\n"));
  for (const std::string s : {"a", "b", "c"}) {
    auto r = run_modlab("run " + quote((d.path / (s + ".toml")).string()) + " --jobs 2 --out " +
                        quote((d.path / (s + "_out")).string()));
    BOOST_TEST_REQUIRE(r.code == 0, s << ": " << r.output);
  }
  const auto a = completed(d.path / "a_out"), b = completed(d.path / "b_out"), c = completed(d.path / "c_out");
  BOOST_TEST_REQUIRE((a.size() == 2u && b.size() == 2u && c.size() == 2u));
  for (std::int64_t seed : {0, 1}) {
    const auto ia = id_with_seed(a, seed), ib = id_with_seed(b, seed), ic = id_with_seed(c, seed);
    // stage b trained only the gate, starting from stage a's experts of the same seed
    BOOST_TEST(torch::equal(weight(d.path / "b_out", ib, "experts", "weight"), weight(d.path / "a_out", ia, "experts", "weight")));
    BOOST_TEST(!torch::equal(weight(d.path / "b_out", ib, "gate", "weight"), weight(d.path / "a_out", ia, "gate", "weight")));
    // stage c trained only the experts, with stage b's gate
    BOOST_TEST(torch::equal(weight(d.path / "c_out", ic, "gate", "weight"), weight(d.path / "b_out", ib, "gate", "weight")));
    BOOST_TEST(!torch::equal(weight(d.path / "c_out", ic, "experts", "weight"), weight(d.path / "b_out", ib, "experts", "weight")));
  }
  // the seeds were matched: the two stage-b runs started from different stage-a experts
  BOOST_TEST(!torch::equal(weight(d.path / "b_out", id_with_seed(b, 0), "experts", "weight"),
                           weight(d.path / "b_out", id_with_seed(b, 1), "experts", "weight")));

  // An ambiguous reference (two completed runs of one seed) fails the run, naming the problem.
  write(d.path / "two.toml", stage("two", "train_parts = \"experts\"\n") + "grid = { \"model.expert_init_seed\" = [7, 8] }\n");
  BOOST_TEST_REQUIRE(run_modlab("run " + quote((d.path / "two.toml").string()) + " --out " +
                                quote((d.path / "two_out").string())).code == 0);
  write(d.path / "d.toml", stage("d", "init_gate_from = \"two_out/same-seed\"\n"));
  auto r = run_modlab("run " + quote((d.path / "d.toml").string()) + " --out " + quote((d.path / "d_out").string()));
  BOOST_TEST(r.code != 0, r.output);
  bool named = false;
  for (const auto& row : modlab::runner::read_sweep_index((d.path / "d_out").string()))
    named = named || row.error.find("2 completed runs with seed") != std::string::npos;
  BOOST_TEST(named, r.output);
}
