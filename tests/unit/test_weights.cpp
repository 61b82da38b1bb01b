// Host::load_weights on the real weights file a completed run writes: the whole model or a part
// of it, by run reference; another architecture is rejected before anything is copied.
#define BOOST_TEST_MODULE weights
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"
#include "fixture_registry.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>
#include <modlab/runner/weights.hpp>

#include <torch/torch.h>

#include <filesystem>

using namespace modlab;
using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {

Registry& registry() { return test_fixtures::basic_registry(); }

const char* kRun = R"(
[dataset]
plugin = "fixture_blobs"
n = 64
dim = 4
classes = 3
[model]
plugin = "fixture_mlp"
hidden = 8
[train]
epochs = 2
batch_size = 16
)";

// One completed fixture run (body: Linear 4 → 8, head: Linear 8 → 3) in a temporary results folder.
struct TrainedRun {
  modlab_test::TempDir temp{"weights"};
  fs::path out = temp.path / "results";
  std::string run_id;
  TrainedRun() {
    Value v = parse_toml(kRun, "trained.toml");
    RunRequest r;
    r.config = std::make_shared<const Value>(v);
    r.run_id = run_id_of(v);
    r.seed = 3;
    r.sweep_name = "trained";
    r.sweep_dir = out.string();
    r.out_dir = out.string();
    auto outcome = execute_run(registry(), r);
    if (outcome.status != RunStatus::Completed) throw std::runtime_error("fixture run failed: " + outcome.error);
    run_id = r.run_id;
  }
  std::map<std::string, torch::Tensor> saved() const {
    return read_weights_file(RunPaths::of(out.string(), run_id).weights);
  }
};

const TrainedRun& trained() {
  static TrainedRun t;
  return t;
}

RunHost host_in(const fs::path& results) {
  HostOptions o;
  o.results_dir = results.string();
  o.sweep_dir = results.parent_path().string();
  o.seed = 3;
  return RunHost(registry(), o);
}

std::string load_error(torch::nn::Module& m, const std::string& ref, const std::string& part) {
  RunHost h = host_in(trained().out);
  try {
    h.load_weights(m, ref, part);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_weights_file_lists_every_parameter_by_dotted_name) {
  auto saved = trained().saved();
  BOOST_TEST(saved.size() == 4u);
  BOOST_TEST_REQUIRE(saved.count("body.weight") == 1u);
  BOOST_TEST((saved.at("body.weight").sizes() == torch::IntArrayRef{8, 4}));
  BOOST_TEST((saved.at("head.bias").sizes() == torch::IntArrayRef{3}));
}

BOOST_AUTO_TEST_CASE(loads_a_part_with_its_prefix_stripped) {
  auto saved = trained().saved();
  torch::nn::Linear body(4, 8);
  RunHost h = host_in(trained().out);
  h.load_weights(*body, trained().run_id, "body");
  BOOST_TEST(torch::equal(body->weight, saved.at("body.weight")));
  BOOST_TEST(torch::equal(body->bias, saved.at("body.bias")));
  // referred to as "<results dir>/<run_id>" from the sweep folder, and by seed
  torch::nn::Linear head(8, 3);
  h.load_weights(*head, trained().out.filename().string() + "/" + trained().run_id, "head");
  BOOST_TEST(torch::equal(head->weight, saved.at("head.weight")));
  torch::nn::Linear again(8, 3);
  h.load_weights(*again, trained().out.filename().string() + "/same-seed", "head");
  BOOST_TEST(torch::equal(again->bias, saved.at("head.bias")));
}

BOOST_AUTO_TEST_CASE(loads_the_whole_model_into_a_model_of_the_same_plugin) {
  auto saved = trained().saved();
  RunHost h = host_in(trained().out);
  Value v = parse_toml(kRun, "again.toml");
  Config root(std::make_shared<const Value>(v), "");
  DatasetSpec spec;
  spec.input_shape = {4};
  spec.num_classes = 3;
  auto model = h.create_model("fixture_mlp", root.sub("model"), spec);
  BOOST_TEST(!torch::equal(model->named_parameters()["body.weight"], saved.at("body.weight")));
  h.load_weights(*model, trained().run_id, "");
  for (const auto& kv : model->named_parameters()) BOOST_TEST(torch::equal(kv.value(), saved.at(kv.key())), kv.key());
}

BOOST_AUTO_TEST_CASE(another_architecture_is_a_config_error_naming_the_run_and_the_parameter) {
  torch::nn::Linear wider(4, 5);
  const auto before = wider->weight.clone();
  auto m = load_error(*wider, trained().run_id, "body");
  BOOST_TEST(m.find("run '" + trained().run_id + "'") == 0u, m);
  BOOST_TEST(m.find("body.weight is [8, 4] there, [5, 4] here") != std::string::npos, m);
  BOOST_TEST(m.find("body.bias is [8] there, [5] here") != std::string::npos, m);
  BOOST_TEST(torch::equal(wider->weight, before));  // nothing copied

  torch::nn::Linear no_bias(torch::nn::LinearOptions(4, 8).bias(false));
  m = load_error(*no_bias, trained().run_id, "body");
  BOOST_TEST(m.find("not in this model: body.bias") != std::string::npos, m);

  torch::nn::Sequential two(torch::nn::Linear(4, 8), torch::nn::Linear(8, 3));
  m = load_error(*two, trained().run_id, "");
  BOOST_TEST(m.find("missing there: 0.bias, 0.weight, 1.bias, 1.weight") != std::string::npos, m);
  BOOST_TEST(m.find("not in this model: body.bias, body.weight, head.bias, head.weight") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(a_part_the_run_does_not_have_and_a_run_that_is_not_there) {
  torch::nn::Linear l(4, 8);
  auto m = load_error(*l, trained().run_id, "experts");
  BOOST_TEST(m.find("has no weights under 'experts' (it has: body, head)") != std::string::npos, m);
  m = load_error(*l, "0123456789abcdef", "body");
  BOOST_TEST(m.find("run '0123456789abcdef': no finished run file") == 0u, m);
}
