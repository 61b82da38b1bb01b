// The folded-K rule of modlab::nn: for every layer, a forward with K-batched overrides on K·B rows
// equals K separate forwards with one override set each (values and gradients); OverrideScope,
// maskable_parameters, shape errors; the LSTM, attention and Transformer layers.
#define BOOST_TEST_MODULE nn_fold
#include <boost/test/unit_test.hpp>

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/nn/sequence.hpp>

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

using namespace modlab::nn;

namespace {

using Overrides = std::map<std::string, torch::Tensor>;

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-9) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, tol, tol);
}

/// K override sets for every maskable parameter of `m`: the parameter times a random 0/1 mask
/// (as a mask analysis uses them), returned as K single sets and as one K-batched set.
std::pair<std::vector<Overrides>, Overrides> mask_sets(torch::nn::Module& m, std::int64_t K) {
  std::vector<Overrides> single(static_cast<std::size_t>(K));
  Overrides batched;
  auto params = m.named_parameters();
  for (const auto& name : maskable_parameters(m)) {
    const auto& p = params[name];
    std::vector<torch::Tensor> per;
    for (std::int64_t k = 0; k < K; ++k) {
      auto masked = p.detach() * torch::bernoulli(torch::full_like(p, 0.7));
      single[static_cast<std::size_t>(k)][name] = masked;
      per.push_back(masked);
    }
    batched[name] = torch::stack(per).requires_grad_();
  }
  return {single, batched};
}

/// Checks the folded rule for `m`: `inputs(k)` gives sample k's input (B rows along `in_dim`),
/// `run` applies the module (rows along `out_dim` of its output). The folded forward on the K
/// blocks concatenated along `in_dim` must
/// equal the K separate forwards, and the gradient reaching the batched override of every parameter
/// must equal the gradients of the separate forwards.
void check_folded(torch::nn::Module& m, const std::function<torch::Tensor(std::int64_t)>& inputs,
                  const std::function<torch::Tensor(const torch::Tensor&)>& run, std::int64_t in_dim = 0,
                  std::int64_t out_dim = -1, std::int64_t K = 3) {
  if (out_dim < 0) out_dim = in_dim;
  torch::manual_seed(11);
  auto [single, batched] = mask_sets(m, K);
  BOOST_TEST_REQUIRE(!batched.empty());
  std::vector<torch::Tensor> xs, want;
  for (std::int64_t k = 0; k < K; ++k) {
    xs.push_back(inputs(k));
    Overrides leaf;
    for (auto& [n, v] : single[static_cast<std::size_t>(k)]) leaf[n] = v.clone().requires_grad_();
    OverrideScope scope(m, leaf);
    BOOST_TEST(scope.samples() == 1);
    auto y = run(xs.back());
    want.push_back(y.detach());
    torch::manual_seed(99 + k);
    (y * torch::randn(y.sizes(), y.options())).sum().backward();
    for (auto& [n, v] : leaf) single[static_cast<std::size_t>(k)][n] = v.grad().defined() ? v.grad() : torch::zeros_like(v);
  }
  OverrideScope scope(m, batched);
  BOOST_TEST(scope.samples() == K);
  BOOST_TEST(folded_samples() == K);
  auto y = run(torch::cat(xs, in_dim));
  auto blocks = y.chunk(K, out_dim);
  auto r = torch::empty_like(y);
  auto r_blocks = r.chunk(K, out_dim);
  for (std::int64_t k = 0; k < K; ++k) {
    BOOST_TEST(close(blocks[k].detach(), want[static_cast<std::size_t>(k)]), "sample " << k);
    torch::manual_seed(99 + k);
    r_blocks[k].copy_(torch::randn(blocks[k].sizes(), blocks[k].options()));  // not randn_like: a chunk may be strided
  }
  (y * r).sum().backward();
  for (auto& [n, v] : batched) {
    BOOST_TEST_REQUIRE(v.grad().defined(), n);
    for (std::int64_t k = 0; k < K; ++k)
      BOOST_TEST(close(v.grad()[k], single[static_cast<std::size_t>(k)][n]), n << " sample " << k);
  }
}

torch::Tensor randn(at::IntArrayRef shape) { return torch::randn(shape, torch::kFloat64); }

}  // namespace

BOOST_AUTO_TEST_CASE(linear_folds_k_into_the_rows) {
  Linear layer(5, 4);
  layer->to(torch::kFloat64);
  check_folded(*layer, [](std::int64_t) { return randn({6, 5}); }, [&](const torch::Tensor& x) { return layer(x); });
  // more leading axes: rows are dimension 0
  check_folded(*layer, [](std::int64_t) { return randn({2, 3, 5}); }, [&](const torch::Tensor& x) { return layer(x); });
  // transposed activations: rows are the last axis
  check_folded(
      *layer, [](std::int64_t) { return randn({5, 6}); }, [&](const torch::Tensor& x) { return layer->forward_t(x); },
      /*in_dim=*/1);
}

BOOST_AUTO_TEST_CASE(one_sample_overrides_are_the_parameters_own_shape) {
  torch::manual_seed(2);
  modlab::nn::Linear lin(5, 3);
  modlab::nn::Conv2d conv(2, 4, 3, 1, 1);
  const auto x = torch::randn({6, 5});
  const auto img = torch::randn({2, 2, 5, 5});
  const auto w = torch::randn({1, 3, 5}), cw = torch::randn({1, 4, 2, 3, 3});
  torch::Tensor want, got, cwant, cgot;
  {
    modlab::nn::OverrideScope s(*lin, {{"weight", w[0]}});
    want = lin(x);
  }
  {
    modlab::nn::OverrideScope s(*lin, {{"weight", w}});
    got = lin(x);
  }
  {
    modlab::nn::OverrideScope s(*conv, {{"weight", cw[0]}});
    cwant = conv(img);
  }
  {
    modlab::nn::OverrideScope s(*conv, {{"weight", cw}});
    cgot = conv(img);
  }
  BOOST_TEST(torch::allclose(got, want));
  BOOST_TEST(torch::allclose(cgot, cwant));
}

BOOST_AUTO_TEST_CASE(conv2d_folds_k_into_the_rows_also_grouped) {
  Conv2d plain(2, 4, 3, /*stride=*/1, /*padding=*/1);
  plain->to(torch::kFloat64);
  check_folded(*plain, [](std::int64_t) { return randn({2, 2, 6, 6}); }, [&](const torch::Tensor& x) { return plain(x); });
  Conv2d grouped(4, 6, 3, /*stride=*/2, /*padding=*/0, /*bias=*/true, /*groups=*/2);
  grouped->to(torch::kFloat64);
  check_folded(*grouped, [](std::int64_t) { return randn({3, 4, 7, 7}); },
               [&](const torch::Tensor& x) { return grouped(x); });
}

BOOST_AUTO_TEST_CASE(stacked_linear_folds_k_into_the_rows_of_each_member) {
  StackedLinear layer(3, 5, 4);
  layer->to(torch::kFloat64);
  // shared input [rows, in] → [E, rows, out]
  check_folded(*layer, [](std::int64_t) { return randn({6, 5}); }, [&](const torch::Tensor& x) { return layer(x); },
               /*in_dim=*/0, /*out_dim=*/1);
  // shared transposed input [in, rows] → [E, out, rows]
  check_folded(*layer, [](std::int64_t) { return randn({5, 6}); },
               [&](const torch::Tensor& x) { return layer->forward_t(x); }, 1, 2);
}

BOOST_AUTO_TEST_CASE(stacked_linear_member_inputs_and_transposed_activations_fold) {
  StackedLinear layer(3, 5, 4);
  layer->to(torch::kFloat64);
  check_folded(*layer, [](std::int64_t) { return randn({3, 6, 5}); }, [&](const torch::Tensor& x) { return layer(x); },
               1);
  check_folded(*layer, [](std::int64_t) { return randn({3, 5, 6}); },
               [&](const torch::Tensor& x) { return layer->forward_t(x); }, 2);
}

BOOST_AUTO_TEST_CASE(stacked_conv2d_equals_separate_convolutions_and_folds) {
  torch::manual_seed(2);
  const std::int64_t E = 3, C = 2, O = 4;
  StackedConv2d layer(E, C, O, 3, 1, 1);
  layer->to(torch::kFloat64);
  const auto shared = randn({5, C, 6, 6});
  const auto own = randn({5, E * C, 6, 6});
  const auto ys = layer(shared), yo = layer(own);
  BOOST_TEST(ys.sizes() == (std::vector<std::int64_t>{5, E * O, 6, 6}));
  for (std::int64_t e = 0; e < E; ++e) {
    const auto w = layer->weight[e], b = layer->bias[e];
    BOOST_TEST(close(ys.narrow(1, e * O, O), torch::conv2d(shared, w, b, 1, 1)), "member " << e);
    BOOST_TEST(close(yo.narrow(1, e * O, O), torch::conv2d(own.narrow(1, e * C, C), w, b, 1, 1)), "member " << e);
  }
  check_folded(*layer, [&](std::int64_t) { return randn({2, C, 6, 6}); }, [&](const torch::Tensor& x) { return layer(x); });
  check_folded(*layer, [&](std::int64_t) { return randn({2, E * C, 6, 6}); },
               [&](const torch::Tensor& x) { return layer(x); });
  BOOST_CHECK_THROW(layer(randn({2, C + 1, 6, 6})), modlab::Error);
}

// Routed rows: each group of rows runs its own member only; with K samples folded in, group g of
// the K·E counts is member g % E of sample g / E; empty groups cost nothing.
BOOST_AUTO_TEST_CASE(routed_rows_run_their_own_member_and_fold) {
  torch::manual_seed(5);
  const std::int64_t E = 3, C = 2, O = 4, In = 5, Out = 2;
  StackedConv2d conv(E, C, O, 3, 1, 1);
  StackedLinear lin(E, In, Out);
  conv->to(torch::kFloat64);
  lin->to(torch::kFloat64);
  const auto x = randn({6, C, 5, 5}), v = randn({6, In});
  const std::vector<std::int64_t> counts = {2, 0, 4};  // member 1 gets nothing
  MacCounter macs;
  const auto yc = conv->forward_routed(x, counts);
  const auto yl = lin->forward_routed(v, counts);
  BOOST_TEST(macs.total() == 6 * (O * 25 * C * 9) + 6 * In * Out);
  BOOST_TEST(close(yc.narrow(0, 0, 2), torch::conv2d(x.narrow(0, 0, 2), conv->weight[0], conv->bias[0], 1, 1)));
  BOOST_TEST(close(yc.narrow(0, 2, 4), torch::conv2d(x.narrow(0, 2, 4), conv->weight[2], conv->bias[2], 1, 1)));
  BOOST_TEST(close(yl.narrow(0, 2, 4), torch::addmm(lin->bias[2], v.narrow(0, 2, 4), lin->weight[2])));
  // K = 2 samples: the counts of each sample's block, members in order.
  std::vector<Overrides> sets(2);
  Overrides folded;
  for (const auto& item : conv->named_parameters()) {
    const auto& p = item.value();
    std::vector<torch::Tensor> per;
    for (auto& set : sets) per.push_back(set[item.key()] = p.detach() * torch::bernoulli(torch::full_like(p, 0.7)));
    folded[item.key()] = torch::stack(per);
  }
  const std::vector<std::int64_t> first = {1, 1, 1}, second = {0, 3, 0};
  std::vector<torch::Tensor> want;
  for (std::size_t k = 0; k < 2; ++k) {
    OverrideScope scope(*conv, sets[k]);
    want.push_back(conv->forward_routed(x.narrow(0, static_cast<std::int64_t>(3 * k), 3), k == 0 ? first : second));
  }
  OverrideScope scope(*conv, folded);
  const auto got = conv->forward_routed(x, {1, 1, 1, 0, 3, 0});
  BOOST_TEST(close(got, torch::cat(want)));
  BOOST_CHECK_THROW(conv->forward_routed(x, {1, 1, 1, 0, 2, 0}), modlab::ArgumentError);   // rows do not add up
  BOOST_CHECK_THROW(conv->forward_routed(x, {6, 0, 0}), modlab::ArgumentError);             // K = 2 weights, 1 sample
  BOOST_CHECK_THROW(lin->forward_routed(v, {3, 3}), modlab::ArgumentError);                 // not a multiple of E
  BOOST_TEST(lin->forward_routed(v.narrow(0, 0, 0), {0, 0, 0}).size(0) == 0);
}

BOOST_AUTO_TEST_CASE(convolutions_count_their_multiply_accumulates) {
  StackedConv2d stacked(3, 2, 4, 3, 1, 1);
  Conv2d conv(2, 4, 3, 1, 1);
  MacCounter macs;
  stacked(torch::randn({1, 2, 5, 5}));
  BOOST_TEST(macs.total() == 3 * 4 * 25 * 2 * 9);
  conv(torch::randn({2, 2, 5, 5}));
  BOOST_TEST(macs.total() == 3 * 4 * 25 * 2 * 9 + 2 * 4 * 25 * 2 * 9);
}

BOOST_AUTO_TEST_CASE(embedding_and_layer_norm_fold) {
  Embedding emb(7, 4);
  emb->to(torch::kFloat64);
  check_folded(*emb, [](std::int64_t) { return torch::randint(7, {3, 5}, torch::kLong); },
               [&](const torch::Tensor& x) { return emb(x); });
  LayerNorm norm(4);
  norm->to(torch::kFloat64);
  check_folded(*norm, [](std::int64_t) { return randn({3, 2, 4}); }, [&](const torch::Tensor& x) { return norm(x); });
}

BOOST_AUTO_TEST_CASE(batch_norm_folds_with_its_own_statistics_per_block) {
  BatchNorm bn(3);
  bn->to(torch::kFloat64);
  bn->train();
  // training mode: batch statistics per block, running statistics untouched by the folded pass
  check_folded(*bn, [](std::int64_t k) { return randn({4, 3, 2, 2}) * (k + 1) + k; },
               [&](const torch::Tensor& x) { return bn(x); });
  bn->eval();
  check_folded(*bn, [](std::int64_t) { return randn({4, 3}); }, [&](const torch::Tensor& x) { return bn(x); });
  // the same as torch::nn::BatchNorm2d, running statistics included
  torch::nn::BatchNorm2d ref(3);
  ref->to(torch::kFloat64);
  BatchNorm mine(3);
  mine->to(torch::kFloat64);
  const auto x = randn({5, 3, 2, 2});
  BOOST_TEST(close(mine(x), ref(x)));
  BOOST_TEST(close(mine->running_mean, ref->running_mean));
  BOOST_TEST(close(mine->running_var, ref->running_var));
  BOOST_TEST(mine->num_batches_tracked.item<std::int64_t>() == 1);
}

BOOST_AUTO_TEST_CASE(a_folded_pass_leaves_batch_norm_running_statistics_alone) {
  BatchNorm bn(2);
  const auto x = torch::randn({6, 2}) + 3.0;
  OverrideScope scope(*bn, {{"weight", torch::ones({3, 2})}});
  bn(x);
  BOOST_TEST(close(bn->running_mean, torch::zeros({2})));
}

BOOST_AUTO_TEST_CASE(lstm_folds_and_starts_as_the_reference_initialises) {
  torch::manual_seed(3);
  Lstm lstm(5, 8, 2);
  lstm->to(torch::kFloat64);
  check_folded(*lstm, [](std::int64_t) { return randn({2, 4, 5}); }, [&](const torch::Tensor& x) { return lstm(x); });
  const auto& cell = lstm->cells[0];
  const std::int64_t H = 8;
  BOOST_TEST(close(cell->bias.narrow(0, H, H), torch::ones({H}, torch::kFloat64)));  // forget gate
  BOOST_TEST(cell->bias.narrow(0, 0, H).abs().sum().item<double>() == 0.0);
  const auto wc = cell->weight_hh.narrow(0, 2 * H, H);
  const double g = 5.0 / 3.0 / std::sqrt(2.0);
  BOOST_TEST(close(wc.mm(wc.t()), torch::eye(H, torch::kFloat64) * g * g, 1e-6));
  BOOST_TEST((maskable_parameters(*lstm) == std::vector<std::string>{"cells.0.weight_ih", "cells.0.weight_hh", "cells.0.bias",
                                                                     "cells.1.weight_ih", "cells.1.weight_hh", "cells.1.bias"}));
}

BOOST_AUTO_TEST_CASE(lstm_cell_computes_the_gates_in_order) {
  LstmCell cell(2, 1);
  cell->to(torch::kFloat64);
  torch::NoGradGuard ng;
  cell->weight_ih.copy_(torch::tensor({{1.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}, {0.5, 0.5}}, torch::kFloat64));
  cell->weight_hh.fill_(0.0);
  cell->bias.fill_(0.0);
  const auto x = torch::tensor({{0.3, -0.2}}, torch::kFloat64);
  const auto c0 = torch::tensor({{0.7}}, torch::kFloat64);
  auto s = cell(x, LstmState{torch::zeros({1, 1}, torch::kFloat64), c0});
  const double i = 1 / (1 + std::exp(-0.3)), f = 1 / (1 + std::exp(0.2)), c = std::tanh(0.1), o = 1 / (1 + std::exp(-0.05));
  const double cy = f * 0.7 + i * c;
  BOOST_TEST(s.c.item<double>() == cy, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.h.item<double>() == o * std::tanh(cy), boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(attention_and_transformer_fold) {
  torch::manual_seed(4);
  MultiHeadAttention attn(8, 2, /*dropout=*/0.0);
  attn->to(torch::kFloat64);
  check_folded(*attn, [](std::int64_t) { return randn({2, 3, 8}); },
               [&](const torch::Tensor& x) { return attn->forward(x, x.flip(1)); });
  Transformer trafo(8, 2, 1, 1, 16, 0.0);
  trafo->to(torch::kFloat64);
  trafo->eval();
  check_folded(*trafo, [](std::int64_t) { return randn({2, 5, 8}); },
               [&](const torch::Tensor& x) { return trafo(x, x.narrow(1, 0, 3)); });
}

BOOST_AUTO_TEST_CASE(the_decoder_never_sees_a_later_position) {
  torch::manual_seed(5);
  Transformer trafo(8, 2, 1, 2, 16, 0.0);
  trafo->to(torch::kFloat64);
  const auto src = randn({2, 4, 8});
  auto tgt = randn({2, 5, 8});
  const auto y = trafo(src, tgt);
  for (std::int64_t t = 0; t + 1 < 5; ++t) {
    auto changed = tgt.clone();
    changed.narrow(1, t + 1, 5 - t - 1).normal_();
    const auto y2 = trafo(src, changed);
    BOOST_TEST(close(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1)), "position " << t);
    BOOST_TEST(!close(y.narrow(1, t + 1, 1), y2.narrow(1, t + 1, 1)), "position " << t + 1 << " must change");
  }
  // padded source positions are never attended
  auto padding = torch::zeros({2, 4}, torch::kBool);
  padding[1][3] = true;
  auto src2 = src.clone();
  src2[1][3].normal_();
  BOOST_TEST(close(trafo(src, tgt, padding)[1], trafo(src2, tgt, padding)[1]));
}

BOOST_AUTO_TEST_CASE(padding_is_left_out_of_the_position_wise_layers) {
  // With padding masks, encode/decode run projections, feed-forward and norms on the real
  // positions only; the real positions' outputs and every gradient equal the layers run on all
  // positions, and the padding comes out as zeros.
  torch::manual_seed(8);
  Transformer trafo(8, 2, 2, 2, 16, 0.0);
  trafo->to(torch::kFloat64);
  const auto src = randn({3, 5, 8}), tgt = randn({3, 4, 8});
  auto src_pad = torch::zeros({3, 5}, torch::kBool), tgt_pad = torch::zeros({3, 4}, torch::kBool);
  src_pad[0].narrow(0, 3, 2).fill_(true);
  src_pad[2][4] = true;
  tgt_pad[1].narrow(0, 2, 2).fill_(true);
  const auto src_real = src_pad.logical_not().unsqueeze(2), tgt_real = tgt_pad.logical_not().unsqueeze(2);
  const auto causal = causal_mask(4);
  auto run = [&](bool packed) {
    trafo->zero_grad();
    torch::Tensor memory = src, y;
    if (packed) {
      memory = trafo->encode(src, src_pad);
      y = trafo->decode(tgt, memory, src_pad, tgt_pad);
    } else {
      for (auto& l : trafo->encoder) memory = l->forward(memory, src_pad);
      y = tgt;
      for (auto& l : trafo->decoder) y = l->forward(y, memory, causal, src_pad);
    }
    (y * tgt_real).pow(2).sum().backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : trafo->parameters()) grads.push_back(p.grad().clone());
    return std::make_tuple(memory * src_real, y * tgt_real, memory, y, grads);
  };
  const auto [m0, y0, m0_all, y0_all, g0] = run(false);
  const auto [m1, y1, m1_all, y1_all, g1] = run(true);
  BOOST_TEST(close(m0, m1));
  BOOST_TEST(close(y0, y1));
  BOOST_TEST(close(m1, m1_all));  // zero at the padding
  BOOST_TEST(close(y1, y1_all));
  BOOST_TEST(!close(m0, m0_all));  // the padded path computes them
  BOOST_REQUIRE(g0.size() == g1.size());
  for (std::size_t i = 0; i < g0.size(); ++i) BOOST_TEST(close(g0[i], g1[i]), "gradient " << i);
}

BOOST_AUTO_TEST_CASE(incremental_decoding_equals_the_full_decoder) {
  torch::manual_seed(6);
  Transformer trafo(8, 2, 1, 2, 16, 0.0);
  trafo->to(torch::kFloat64);
  trafo->eval();
  const auto src = randn({3, 4, 8}), tgt = randn({3, 5, 8});
  auto padding = torch::zeros({3, 4}, torch::kBool);
  padding[2][3] = true;
  const auto memory = trafo->encode(src, padding);
  const auto full = trafo->decode(tgt, memory, padding);
  TransformerImpl::DecodeCache cache;
  for (std::int64_t t = 0; t < 5; ++t) {
    const auto y = trafo->decode_step(cache, tgt.narrow(1, t, 1), memory, padding);
    BOOST_TEST(close(y, full.narrow(1, t, 1)), "position " << t);
  }
  BOOST_TEST(cache.memory_kv.size() == 2u);
  BOOST_TEST(cache.self_kv.at(1).size(1) == 5);  // each layer's keys and values at every position so far
}

BOOST_AUTO_TEST_CASE(override_scope_sets_and_clears_and_checks_shapes) {
  Linear layer(3, 2);
  BOOST_TEST(folded_samples() == 1);
  {
    OverrideScope scope(*layer, {{"weight", torch::zeros({4, 2, 3})}});
    BOOST_TEST(layer->has_overrides());
    BOOST_TEST(folded_samples() == 4);
    BOOST_TEST(close(layer(torch::ones({8, 3})), layer->bias.detach().expand({8, 2})));
  }
  BOOST_TEST(!layer->has_overrides());
  BOOST_TEST(folded_samples() == 1);
  auto message = [&](const Overrides& o) {
    try {
      OverrideScope scope(*layer, o);
    } catch (const modlab::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message({{"weight", torch::zeros({2, 4})}}).find("expected [2, 3]") != std::string::npos,
             message({{"weight", torch::zeros({2, 4})}}));
  BOOST_TEST(message({{"wieght", torch::zeros({2, 3})}}).find("'wieght'") != std::string::npos);
  BOOST_TEST(message({{"weight", torch::zeros({4, 2, 3})}, {"bias", torch::zeros({3, 2})}}).find("K") != std::string::npos);
  BOOST_TEST(!layer->has_overrides(), "a failed scope leaves nothing behind");
  // rows that do not split into K blocks
  OverrideScope scope(*layer, {{"weight", torch::zeros({4, 2, 3})}});
  BOOST_CHECK_THROW(layer(torch::ones({6, 3})), modlab::Error);
}

BOOST_AUTO_TEST_CASE(maskable_parameters_names_every_overridable_parameter) {
  struct Net : torch::nn::Module {
    Linear fc{nullptr};
    torch::Tensor raw;
    Net() {
      fc = register_module("fc", Linear(2, 2));
      raw = register_parameter("raw", torch::zeros({2}));
    }
  } net;
  BOOST_TEST((maskable_parameters(net) == std::vector<std::string>{"fc.weight", "fc.bias"}));
}
