#define BOOST_TEST_MODULE goe
// goe: each sample runs one node per level and comes back in batch order; the oracle path
// tables; MACs and parameter counts against the spec's formulas; k-means and the balanced
// 2-means (also degenerate inputs); the VQ-VAE's straight-through gradient, loss and perplexity
// against hand values; errors for datasets the model cannot use.
#include <boost/test/unit_test.hpp>

#include "clustering.hpp"
#include "goe.hpp"
#include "tree.hpp"
#include "vqvae.hpp"

#include "config_builders.hpp"
#include "model_builders.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <set>

using namespace modlab;
using namespace modlab::goe;
using namespace test_config;

namespace {

DatasetSpec image_spec(std::int64_t channels, std::int64_t side, std::int64_t classes, std::int64_t groups) {
  DatasetSpec s;
  s.name = "images";
  s.input_shape = {channels, side, side};
  s.num_classes = classes;
  s.splits = {"train", "val", "test"};
  if (groups > 0) {
    s.group_kind = "rotation";
    for (std::int64_t g = 0; g < groups; ++g) s.group_names.push_back(std::to_string(g));
  }
  return s;
}

GoeOptions options(const std::string& network, const std::string& router, std::int64_t p) {
  GoeOptions o;
  o.network = network;
  o.router = router;
  o.param_factor = p;
  return o;
}

/// The tree's output for one sample computed by hand: the nodes of its leaf's path, one per level.
torch::Tensor by_hand(ModuleTreeImpl& t, const torch::Tensor& x, std::int64_t leaf) {
  auto h = x.unsqueeze(0);
  const auto levels = t.depth();
  for (std::int64_t d = 0; d + 1 < levels; ++d) {
    const auto node = leaf >> (levels - 1 - d);
    h = torch::conv2d(h, t.convs[static_cast<std::size_t>(d)]->weight[node], t.convs[static_cast<std::size_t>(d)]->bias[node], 1, 1);
    h = torch::relu(torch::max_pool2d(h, 2));
  }
  h = torch::relu(torch::addmm(t.fc_hidden->bias[leaf].unsqueeze(0), h.flatten(1), t.fc_hidden->weight[leaf]));
  return torch::addmm(t.fc_out->bias[leaf].unsqueeze(0), h, t.fc_out->weight[leaf]).squeeze(0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(each_sample_runs_one_node_per_level_in_batch_order) {
  torch::manual_seed(3);
  ModuleTree t(stack_shape(1, 28, 3, 2, 10, false), 2);
  BOOST_TEST(t->leaves() == 4);
  const auto x = torch::rand({13, 1, 28, 28});
  const auto leaf = torch::tensor({3, 0, 1, 1, 0, 3, 3, 0, 1, 0, 3, 1, 0}, torch::kLong);  // leaf 2 unused
  const auto y = t->forward(x, leaf);
  BOOST_TEST_REQUIRE((y.sizes().vec() == std::vector<std::int64_t>{13, 10}));
  for (std::int64_t i = 0; i < 13; ++i)
    BOOST_TEST(torch::allclose(y[i], by_hand(*t, x[i], leaf[i].item<std::int64_t>()), 1e-5, 1e-5), "sample " << i);
  // The unused leaf's modules receive no gradient; its parent (node 1 of level 1) does, through leaf 3.
  y.sum().backward();
  BOOST_TEST(t->fc_out->weight.grad()[2].abs().sum().item<double>() == 0.0);
  BOOST_TEST(t->fc_hidden->weight.grad()[2].abs().sum().item<double>() == 0.0);
  BOOST_TEST(t->fc_out->weight.grad()[3].abs().sum().item<double>() > 0.0);
  BOOST_TEST(t->convs[1]->weight.grad()[1].abs().sum().item<double>() > 0.0);
}

BOOST_AUTO_TEST_CASE(an_empty_branch_costs_nothing) {
  ModuleTree t(stack_shape(1, 28, 3, 4, 10, false), 2);
  const auto x = torch::rand({6, 1, 28, 28});
  torch::NoGradGuard ng;
  modlab::nn::MacCounter all_on_one;
  t->forward(x, torch::zeros({6}, torch::kLong));
  const auto one = all_on_one.total();
  modlab::nn::MacCounter spread;
  t->forward(x, torch::tensor({0, 1, 2, 3, 0, 1}, torch::kLong));
  BOOST_TEST(spread.total() == one);  // six paths either way: the cost does not grow with the nodes used
  BOOST_TEST(one == 6 * (3920 * 16 + 7096 * 4));
}

BOOST_AUTO_TEST_CASE(macs_and_parameters_follow_the_spec_formulas) {
  auto& host = test_model::host();
  const std::map<std::int64_t, std::int64_t> mnist_macs = {{2, 29872},   {4, 91104},    {8, 307648},
                                                           {12, 649632}, {16, 1117056}, {24, 2428224}};
  for (const auto& [p, macs] : mnist_macs) {
    BOOST_TEST_CONTEXT("Rotated MNIST, p = " << p) {
      GoeModel goe(options("tree", "oracle", p), image_spec(1, 28, 10, 4), host);
      GoeModel ref(options("ref_sqB", "oracle", p), image_spec(1, 28, 10, 4), host);
      BOOST_TEST(goe.macs_per_sample() == macs);
      BOOST_TEST(goe.macs_per_sample() == 3920 * p * p + 7096 * p);
      BOOST_TEST(ref.macs_per_sample() == macs);  // one path costs what the chain costs
      BOOST_TEST(goe.num_parameters() == 1604 * p * p + 190 * p + 40);
      BOOST_TEST(ref.num_parameters() == 410 * p * p + 56 * p + 10);
      BOOST_TEST(goe.router_macs_per_sample() == 0);
    }
  }
  const std::map<std::int64_t, std::int64_t> celeba_macs = {{1, 37392},   {2, 94240},     {4, 266304},
                                                            {8, 843904}, {12, 1732800}, {16, 2932992}};
  for (const auto& [p, macs] : celeba_macs) {
    BOOST_TEST_CONTEXT("CelebA, p = " << p) {
      GoeModel goe(options("tree", "oracle", p), image_spec(3, 32, 2, 8), host);
      BOOST_TEST(goe.macs_per_sample() == macs);
      BOOST_TEST(goe.macs_per_sample() == 9728 * p * p + 27664 * p);
      BOOST_TEST(goe.num_parameters() == 4420 * p * p + 240 * p + 16);
    }
  }
  // ref_sqA doubles the widths after level 1: about the GoE's parameters (the same p² term on MNIST).
  GoeModel wide(options("ref_sqA", "oracle", 8), image_spec(1, 28, 10, 4), host);
  BOOST_TEST(wide.num_parameters() == 1604 * 64 + 102 * 8 + 10);
  // The latent router's own cost is reported apart: encoder, codebook search and k-means.
  GoeModel latent(options("tree", "latent", 2), image_spec(1, 28, 10, 4), host);
  const std::int64_t encoder = 16 * 16 * 14 * 14 + 32 * 16 * 16 * 7 * 7 + 32 * 32 * 9 * 49 +
                               2 * (32 * 32 * 9 * 49 + 32 * 32 * 49) + 4 * 32 * 49;
  BOOST_TEST(latent.router_macs_per_sample() == encoder + 49 * 128 * 4 + 4 * 196);
}

BOOST_AUTO_TEST_CASE(oracle_paths_come_from_the_group_ids) {
  // Rotation r → [r >> 1, r & 1]; CelebA group a = Black_Hair + 2·Arched_Eyebrows + 4·Oval_Face →
  // path MSB first, so the root bit is Oval_Face and the last bit Black_Hair.
  BOOST_TEST((leaf_paths(4) == std::vector<std::string>{"00", "01", "10", "11"}));
  const auto celeba = leaf_paths(8);
  for (std::int64_t a = 0; a < 8; ++a) {
    BOOST_TEST(celeba[static_cast<std::size_t>(a)][0] == ((a >> 2) & 1 ? '1' : '0'));  // Oval_Face
    BOOST_TEST(celeba[static_cast<std::size_t>(a)][2] == (a & 1 ? '1' : '0'));         // Black_Hair
  }
  GoeModel m(options("tree", "oracle", 2), image_spec(1, 28, 10, 4), test_model::host());
  Batch b = test_model::batch_of(torch::rand({8, 1, 28, 28}), torch::randint(10, {8}, torch::kLong));
  b.groups = torch::tensor({0, 1, 2, 3, 3, 2, 1, 0}, torch::kLong);
  b.indices = torch::arange(8, torch::kLong);
  BOOST_TEST(torch::equal(m.route(b), b.groups));
  torch::NoGradGuard ng;
  BOOST_TEST(torch::allclose(m.forward(b).prediction, m.tree->forward(b.inputs, b.groups)));
}

BOOST_AUTO_TEST_CASE(random_routers_are_fixed_per_image_and_per_example) {
  GoeModel m(options("tree", "random", 2), image_spec(1, 28, 10, 0), test_model::host());
  const auto x = torch::rand({64, 1, 28, 28});
  Batch b = test_model::batch_of(x, torch::zeros({64}, torch::kLong));
  const auto first = m.route(b);
  b.inputs = torch::cat({x.narrow(0, 32, 32), x.narrow(0, 0, 32)});  // the same images, reordered
  BOOST_TEST(torch::equal(m.route(b), torch::cat({first.narrow(0, 32, 32), first.narrow(0, 0, 32)})));
  BOOST_TEST(std::get<0>(torch::_unique(first)).numel() == 4);  // 64 images use every leaf
  const auto idx = torch::arange(1000, torch::kLong);
  const auto r = m.random_leaf("test", idx);
  BOOST_TEST(torch::equal(r, m.random_leaf("test", idx)));
  BOOST_TEST(!torch::equal(r, m.random_leaf("val", idx)));
  const auto counts = torch::bincount(r, {}, 4).to(torch::kDouble);
  BOOST_TEST(((counts - 250).abs() < 60).all().item<bool>(), "uniform leaves: " << counts);
}

BOOST_AUTO_TEST_CASE(kmeans_finds_separated_blobs) {
  torch::manual_seed(0);
  const auto centres = torch::tensor({{0.0, 0.0}, {10.0, 0.0}, {0.0, 10.0}});
  const auto x = torch::cat({torch::randn({50, 2}) * 0.3 + centres[0], torch::randn({60, 2}) * 0.3 + centres[1],
                             torch::randn({70, 2}) * 0.3 + centres[2]});
  const auto r = kmeans(x, 3, 5, 100, 1);
  const auto sizes = std::get<0>(torch::sort(torch::bincount(r.labels, {}, 3)));
  BOOST_TEST((sizes.to(torch::kLong).equal(torch::tensor({50, 60, 70}, torch::kLong))));
  BOOST_TEST(r.inertia < 180 * 2 * 0.3 * 0.3 * 1.5);
  BOOST_TEST(torch::equal(nearest(x, r.centres), r.labels));
  BOOST_CHECK_THROW(kmeans(x.narrow(0, 0, 2), 3, 1, 10, 0), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(balanced_two_means_gives_every_leaf_one_cluster) {
  auto is_permutation = [](const torch::Tensor& leaf, std::int64_t k) {
    return torch::equal(std::get<0>(torch::sort(leaf)), torch::arange(k, torch::kLong));
  };
  // Two far groups of two: the first split separates them, so each group shares a root bit.
  const auto pairs = torch::tensor({{0.0, 0.0}, {10.0, 0.0}, {0.0, 1.0}, {10.0, 1.0}});
  const auto top = balanced_leaves(pairs, 42, false);
  BOOST_TEST(is_permutation(top, 4));
  BOOST_TEST((top[0].item<std::int64_t>() >> 1) == (top[2].item<std::int64_t>() >> 1));
  BOOST_TEST((top[1].item<std::int64_t>() >> 1) == (top[3].item<std::int64_t>() >> 1));
  BOOST_TEST((top[0].item<std::int64_t>() >> 1) != (top[1].item<std::int64_t>() >> 1));
  // The reference's order: the same split decides the last bit instead.
  const auto ref = balanced_leaves(pairs, 42, true);
  for (std::int64_t i = 0; i < 4; ++i) {
    const auto l = top[i].item<std::int64_t>();
    BOOST_TEST(ref[i].item<std::int64_t>() == (((l & 1) << 1) | (l >> 1)));
  }
  // Unbalanced 2-means (three near points and one far): the far side takes one more.
  BOOST_TEST(is_permutation(balanced_leaves(torch::tensor({{0.0}, {0.1}, {0.2}, {9.0}}), 42, false), 4));
  // Duplicate centres (2-means has an empty side) and random ones.
  BOOST_TEST(is_permutation(balanced_leaves(torch::zeros({8, 5}), 42, false), 8));
  BOOST_TEST(is_permutation(balanced_leaves(torch::tensor({{1.0}, {1.0}, {1.0}, {2.0}}), 42, false), 4));
  BOOST_TEST(is_permutation(balanced_leaves(torch::randn({16, 3}), 42, false), 16));
  BOOST_TEST(is_permutation(balanced_leaves(torch::randn({1, 3}), 42, false), 1));
  BOOST_CHECK_THROW(balanced_leaves(torch::randn({6, 3}), 42, false), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(vq_quantiser_against_hand_values) {
  VqSettings s;
  s.codes = 2;
  s.code_dim = 1;
  VqVae vq(1, s);
  {
    torch::NoGradGuard ng;
    vq->codebook->weight.copy_(torch::tensor({{0.0f}, {1.0f}}));
  }
  const auto z = torch::tensor({0.2f, 0.9f, 0.4f, 0.7f}).view({1, 1, 2, 2}).requires_grad_(true);
  const auto q = vq->quantize(z);
  BOOST_TEST(torch::equal(q.z_q.detach(), torch::tensor({0.0f, 1.0f, 0.0f, 1.0f}).view({1, 1, 2, 2})));
  BOOST_TEST(torch::equal(q.codes, torch::tensor({{0, 1, 0, 1}}, torch::kLong)));
  // mean((e − z)²) = (0.04 + 0.01 + 0.16 + 0.09) / 4 = 0.075; loss = (1 + β)·0.075.
  BOOST_TEST(q.loss.item<double>() == 1.25 * 0.075, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(q.perplexity.item<double>() == 2.0, boost::test_tools::tolerance(1e-6));
  // Straight through: d(Σ w·z_q)/dz = w; the codebook gets β·2(e − z)/n from the loss only.
  const auto w = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 2, 2});
  (q.z_q * w).sum().backward();
  BOOST_TEST(torch::allclose(z.grad(), w));
  vq->zero_grad();
  auto z2 = z.detach().clone().requires_grad_(true);
  vq->quantize(z2).loss.backward();
  // commitment term: 2(z − e)/4 per element
  BOOST_TEST(torch::allclose(z2.grad(), (z2.detach() - torch::tensor({0.0f, 1.0f, 0.0f, 1.0f}).view({1, 1, 2, 2})) / 2));
  const auto g = vq->codebook->weight.grad();
  // code 0 is e for z = 0.2, 0.4: β·2·((0 − 0.2) + (0 − 0.4))/4; code 1 for 0.9, 0.7.
  BOOST_TEST(g[0][0].item<double>() == 0.25 * 2 * (-0.6) / 4, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(g[1][0].item<double>() == 0.25 * 2 * (0.1 + 0.3) / 4, boost::test_tools::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(vq_vae_reconstructs_at_the_input_size) {
  VqVae vq(3, VqSettings{});
  const auto x = torch::rand({2, 3, 32, 32});
  const auto q = vq->quantize(vq->encode(x));
  BOOST_TEST((q.z.sizes().vec() == std::vector<std::int64_t>{2, 4, 8, 8}));
  BOOST_TEST((vq->decode(q.z_q).sizes().vec() == x.sizes().vec()));
  BOOST_TEST(vq->embed(x).size(1) == 256);
}

BOOST_AUTO_TEST_CASE(datasets_the_model_cannot_use_are_named) {
  auto err = [](Value::Table model, const DatasetSpec& spec) {
    model["plugin"] = str("goe");
    try {
      test_model::make_model("goe", model, spec);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const auto no_groups = image_spec(1, 28, 10, 0);
  BOOST_TEST(err({}, no_groups).find("model.router: router \"oracle\" routes by the dataset's group ids, and dataset "
                                     "images has none") != std::string::npos);
  BOOST_TEST(err({{"router", str("latent")}}, no_groups).empty());
  BOOST_TEST(err({{"network", str("ref_sqB")}}, no_groups).empty());
  BOOST_TEST(err({}, image_spec(1, 28, 10, 8)).find("gives each of the 8 rotation groups of images its own leaf, but 3 "
                                                     "levels have 4 leaves") != std::string::npos);
  BOOST_TEST(err({{"depth", Value::integer(6)}}, image_spec(1, 28, 10, 4)).find("model.depth: 6 levels pool") != std::string::npos);
  BOOST_TEST(err({}, image_spec(1, 30, 10, 4)).find("model.depth: no default depth for 30×30 images") != std::string::npos);
  BOOST_TEST(err({{"router", str("latent")}, {"depth", Value::integer(3)}}, image_spec(1, 30, 10, 0)).find("not a multiple of 4") !=
             std::string::npos);
  BOOST_TEST(err({{"param_factor", Value::integer(0)}}, no_groups).find("model.param_factor: expected an integer in [1, 256]") !=
             std::string::npos);
  DatasetSpec flat = test_model::flat_spec(4, 2);
  BOOST_TEST(err({}, flat).find("goe needs square images [C, H, W]") != std::string::npos);
}
