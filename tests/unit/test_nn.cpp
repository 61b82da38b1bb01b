// modlab::nn: batched layers equal their per-member / per-sample loops (values and gradients),
// overrides, MAC counting, and the stochastic estimators of nn/functional.hpp.
#define BOOST_TEST_MODULE nn
#include <boost/test/unit_test.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <stdexcept>
#include <string>

using namespace modlab::nn;

namespace {

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-10) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, tol, tol);
}

/// Gradients of sum(y · r) with respect to `inputs`, for a fixed random r.
std::vector<torch::Tensor> grads_of(const torch::Tensor& y, const std::vector<torch::Tensor>& inputs, std::uint64_t seed) {
  torch::manual_seed(seed);
  auto r = torch::randn(y.sizes(), y.options());
  return torch::autograd::grad({(y * r).sum()}, inputs);
}

}  // namespace

BOOST_AUTO_TEST_CASE(stacked_linear_on_a_shared_input_equals_the_member_loop) {
  torch::manual_seed(0);
  const std::int64_t E = 3, B = 7, in = 5, out = 4;
  StackedLinear layer(E, in, out);
  layer->to(torch::kFloat64);
  auto x = torch::randn({B, in}, torch::kFloat64).requires_grad_();
  auto y = layer->forward(x);
  BOOST_TEST(y.sizes() == (std::vector<std::int64_t>{E, B, out}));

  auto w = layer->weight.detach().clone().requires_grad_();
  auto b = layer->bias.detach().clone().requires_grad_();
  auto x2 = x.detach().clone().requires_grad_();
  std::vector<torch::Tensor> rows;
  for (std::int64_t e = 0; e < E; ++e) rows.push_back(torch::addmm(b[e], x2, w[e]));
  auto loop = torch::stack(rows);
  BOOST_TEST(close(y, loop));

  auto g = grads_of(y, {layer->weight, layer->bias, x}, 1);
  auto g2 = grads_of(loop, {w, b, x2}, 1);
  for (std::size_t i = 0; i < g.size(); ++i) BOOST_TEST(close(g[i], g2[i]), "gradient " << i);
}

BOOST_AUTO_TEST_CASE(stacked_linear_on_member_inputs_equals_the_member_loop) {
  torch::manual_seed(2);
  const std::int64_t E = 4, B = 3, in = 6, out = 2;
  StackedLinear layer(E, in, out, /*bias=*/false);
  layer->to(torch::kFloat64);
  BOOST_TEST(!layer->bias.defined());
  auto x = torch::randn({E, B, in}, torch::kFloat64);
  auto y = layer->forward(x);
  for (std::int64_t e = 0; e < E; ++e) BOOST_TEST(close(y[e], x[e].mm(layer->weight[e])), "member " << e);
}

BOOST_AUTO_TEST_CASE(layers_on_transposed_activations_equal_the_plain_layers) {
  torch::manual_seed(3);
  const std::int64_t E = 3, B = 5, in = 4, hidden = 6, out = 2;
  StackedLinear a(E, in, hidden), b(E, hidden, out);
  Linear g(in, E), g2(in, E, /*bias=*/false);
  for (auto* m : std::vector<torch::nn::Module*>{a.get(), b.get(), g.get(), g2.get()}) m->to(torch::kFloat64);
  auto x = torch::randn({B, in}, torch::kFloat64);
  const auto params = std::vector<torch::Tensor>{a->weight, a->bias, b->weight, b->bias, g->weight, g->bias, g2->weight};
  auto reference = b->forward(torch::relu(a->forward(x)));                          // [E, B, out]
  auto gate_reference = g->forward(x) + g2->forward(x);                             // [B, E]
  auto want = grads_of(reference.sum(0) + gate_reference.sum(1, true).expand({B, out}), params, 4);

  auto yt = b->forward_t(torch::relu(a->forward_t(x.t())));  // [E, out, B]
  auto gate_t = g->forward_t(x.t()) + g2->forward_t(x.t());  // [E, B]
  BOOST_TEST(yt.sizes() == (std::vector<std::int64_t>{E, out, B}));
  BOOST_TEST(gate_t.sizes() == (std::vector<std::int64_t>{E, B}));
  BOOST_TEST(yt.is_contiguous());
  BOOST_TEST(close(yt.transpose(1, 2), reference));
  BOOST_TEST(close(gate_t.t(), gate_reference));
  auto got = grads_of(yt.transpose(1, 2).sum(0) + gate_t.t().sum(1, true).expand({B, out}), params, 4);
  for (std::size_t i = 0; i < got.size(); ++i) BOOST_TEST(close(got[i], want[i]), "gradient " << i);
  // Per-member transposed inputs [E, in, B].
  auto xe = torch::randn({E, B, in}, torch::kFloat64);
  BOOST_TEST(close(a->forward_t(xe.transpose(1, 2)).transpose(1, 2), a->forward(xe)));
}

BOOST_AUTO_TEST_CASE(softmax_in_layout_equals_softmax_and_keeps_the_layout) {
  torch::manual_seed(5);
  auto dense = torch::randn({4, 6, 3}, torch::kFloat64).requires_grad_();  // stored [E, C, B]
  auto view = dense.permute({2, 0, 1});                                   // [B, E, C] view
  auto fast = softmax_in_layout(view, -1);
  auto plain = torch::softmax(view.contiguous(), -1);
  BOOST_TEST(close(fast, plain));
  BOOST_TEST(fast.strides() == view.strides());  // no copy into another layout
  BOOST_TEST(close(fast.sum(-1), torch::ones({3, 4}, torch::kFloat64)));
  auto g1 = grads_of(fast, {dense}, 6);
  auto g2 = grads_of(torch::softmax(view, -1), {dense}, 6);
  BOOST_TEST(close(g1[0], g2[0]));
  // Contiguous input and a dimension that is not the last: plain softmax.
  auto x = torch::randn({2, 5}, torch::kFloat64);
  BOOST_TEST(close(softmax_in_layout(x, 0), torch::softmax(x, 0)));
  BOOST_TEST(close(softmax_in_layout(x.t(), 1), torch::softmax(x.t(), 1)));
  // Not a permutation of a dense tensor (a strided slice): still correct.
  auto sliced = torch::randn({6, 8}, torch::kFloat64).slice(1, 0, 8, 2);
  BOOST_TEST(close(softmax_in_layout(sliced, -1), torch::softmax(sliced, -1)));
}

BOOST_AUTO_TEST_CASE(max_pool2x2_equals_max_pool2d_in_values_and_gradients) {
  torch::manual_seed(8);
  // Small integers make many ties inside windows: the gradient must go where max_pool2d sends it
  // (the first maximum in row-major order). Even and odd sizes, 3-D and 4-D, a non-contiguous view.
  const std::vector<torch::Tensor> inputs = {
      torch::randint(0, 3, {2, 3, 6, 8}, torch::kFloat32),  torch::randint(0, 3, {3, 7, 9}, torch::kFloat32),
      torch::randn({2, 2, 26, 26}, torch::kFloat64),         torch::randint(0, 2, {2, 5, 4}, torch::kFloat32),
      torch::randn({2, 4, 10, 6}, torch::kFloat32).transpose(2, 3)};
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    BOOST_TEST_CONTEXT("input " << i << " of shape " << inputs[i].sizes()) {
      auto a = inputs[i].clone().requires_grad_();
      auto b = inputs[i].clone().requires_grad_();
      const auto fast = max_pool2x2(a);
      const auto ref = torch::max_pool2d(b.dim() == 3 ? b.unsqueeze(0) : b, 2);
      const auto want = b.dim() == 3 ? ref.squeeze(0) : ref;
      BOOST_REQUIRE(fast.sizes() == want.sizes());
      BOOST_TEST(torch::equal(fast, want));
      const auto g = torch::randn(want.sizes(), want.options());
      fast.backward(g);
      want.backward(g);
      BOOST_TEST(torch::equal(a.grad(), b.grad()));
    }
  }
  {
    torch::NoGradGuard ng;  // without autograd: the values alone
    const auto x = torch::randn({3, 5, 5});
    BOOST_TEST(torch::equal(max_pool2x2(x), torch::max_pool2d(x.unsqueeze(0), 2).squeeze(0)));
  }
  BOOST_CHECK_THROW(max_pool2x2(torch::zeros({4, 1})), modlab::Error);
}

BOOST_AUTO_TEST_CASE(stacked_linear_counts_its_multiply_accumulates) {
  StackedLinear layer(3, 5, 4);
  MacCounter outer;
  {
    MacCounter inner;
    layer->forward(torch::randn({7, 5}));
    BOOST_TEST(inner.total() == 3 * 7 * 5 * 4);
  }
  layer->forward(torch::randn({3, 2, 5}));
  BOOST_TEST(outer.total() == 3 * 7 * 5 * 4 + 3 * 2 * 5 * 4);
}

BOOST_AUTO_TEST_CASE(overrides_by_name_reject_unknown_parameters) {
  struct Net : torch::nn::Module {
    Linear fc{nullptr};
    Net() { fc = register_module("fc", Linear(2, 2)); }
  } net;
  auto w = torch::zeros({2, 2});
  set_overrides(net, {{"fc.weight", w}});
  BOOST_TEST(close(net.fc->forward(torch::ones({1, 2})), net.fc->bias.unsqueeze(0)));
  clear_overrides(net);
  BOOST_TEST(!net.fc->has_overrides());
  try {
    set_overrides(net, {{"fc.wieght", w}});
    BOOST_FAIL("an unknown parameter name must throw");
  } catch (const modlab::Error& e) {
    BOOST_TEST(std::string(e.what()).find("fc.wieght") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_CASE(hard_gumbel_softmax_is_one_hot_with_the_soft_gradient) {
  torch::manual_seed(5);
  auto logits = torch::randn({6, 4}, torch::kFloat64).requires_grad_();
  const double tau = 0.7;
  auto hard = gumbel_softmax(logits, tau, /*hard=*/true, -1, /*noise=*/false);
  BOOST_TEST(close(hard.sum(-1), torch::ones({6}, torch::kFloat64)));
  BOOST_TEST(close(hard.argmax(-1), logits.argmax(-1)));
  BOOST_TEST((hard == 0).logical_or(hard == 1).all().item<bool>());
  auto g_hard = grads_of(hard, {logits}, 6)[0];
  auto g_soft = grads_of(torch::softmax(logits / tau, -1), {logits}, 6)[0];
  BOOST_TEST(close(g_hard, g_soft));
  // with noise the sample is still one-hot
  auto noisy = gumbel_softmax(logits, tau, true);
  BOOST_TEST(close(noisy.sum(-1), torch::ones({6}, torch::kFloat64)));
}

BOOST_AUTO_TEST_CASE(hard_gumbel_sigmoid_thresholds_at_one_half) {
  auto logits = torch::tensor({-2.0, -0.1, 0.1, 3.0}, torch::kFloat64).requires_grad_();
  auto y = gumbel_sigmoid(logits, 1.0, /*hard=*/true, /*noise=*/false);
  BOOST_TEST(close(y, torch::tensor({0.0, 0.0, 1.0, 1.0}, torch::kFloat64)));
  auto g = grads_of(y, {logits}, 7)[0];
  auto g_soft = grads_of(torch::sigmoid(logits), {logits}, 7)[0];
  BOOST_TEST(close(g, g_soft));
}

BOOST_AUTO_TEST_CASE(topk_selectors_pick_the_largest_in_order) {
  auto scores = torch::tensor({{0.1, 0.9, 0.5, 0.3}, {2.0, -1.0, 0.0, 3.0}}, torch::kFloat64).requires_grad_();
  auto sel = topk_selectors(scores, 2);
  BOOST_TEST(sel.sizes() == (std::vector<std::int64_t>{2, 2, 4}));
  auto want = torch::zeros({2, 2, 4}, torch::kFloat64);
  want[0][0][1] = 1;  // row 0: 0.9 then 0.5
  want[1][0][2] = 1;
  want[0][1][3] = 1;  // row 1: 3.0 then 2.0
  want[1][1][0] = 1;
  BOOST_TEST(close(sel.detach(), want));
  auto g = grads_of(sel, {scores}, 8)[0];
  BOOST_TEST(g.abs().sum().item<double>() > 0.0);
}

BOOST_AUTO_TEST_CASE(entropy_in_bits_of_known_distributions) {
  auto p = torch::tensor({{0.5, 0.5, 0.0, 0.0}, {1.0, 0.0, 0.0, 0.0}, {0.25, 0.25, 0.25, 0.25}}, torch::kFloat64);
  BOOST_TEST(close(entropy_bits(p), torch::tensor({1.0, 0.0, 2.0}, torch::kFloat64)));
  BOOST_TEST(close(entropy_bits(p.t(), 0), torch::tensor({1.0, 0.0, 2.0}, torch::kFloat64)));
}
