// Recurrent and attention layers of modlab::nn (nn/sequence.hpp), built on the maskable layers.
#include <modlab/errors.hpp>
#include <modlab/nn/sequence.hpp>

#include "nn_internal.hpp"

#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace modlab::nn {

namespace {
constexpr double kTanhGain = 5.0 / 3.0;  // torch.nn.init.calculate_gain("tanh"); sigmoid's is 1
}

// ---------------------------------------------------------------- LSTM

LstmCellImpl::LstmCellImpl(std::int64_t in, std::int64_t hidden) : input_size(in), hidden_size(hidden) {
  if (in < 1 || hidden < 1) throw ArgumentError("LstmCell: input and hidden sizes must be >= 1");
  weight_ih = register_parameter("weight_ih", torch::empty({4 * hidden, in}));
  weight_hh = register_parameter("weight_hh", torch::empty({4 * hidden, hidden}));
  bias = register_parameter("bias", torch::empty({4 * hidden}));
  reset_parameters();
}
LstmCellImpl::~LstmCellImpl() = default;

void LstmCellImpl::reset_parameters() {
  torch::NoGradGuard g;
  const auto h = hidden_size;
  bias.zero_();
  bias.narrow(0, h, h).fill_(1.0);  // forget gate
  weight_hh.normal_(0.0, std::sqrt(1.0 / static_cast<double>(h)) / std::sqrt(2.0));
  weight_ih.normal_(0.0, std::sqrt(2.0 / static_cast<double>(input_size + h)) / std::sqrt(2.0));
  torch::nn::init::orthogonal_(weight_hh.narrow(0, 2 * h, h), kTanhGain / std::sqrt(2.0));  // cell candidate
  weight_ih.narrow(0, 2 * h, h).mul_(kTanhGain);
}

LstmState LstmCellImpl::forward(const torch::Tensor& x, const LstmState& state) {
  const auto gates = folded_linear(x, effective("weight_ih", weight_ih), {}, "LstmCell") +
                     folded_linear(state.h, effective("weight_hh", weight_hh), effective("bias", bias), "LstmCell");
  const auto chunks = gates.chunk(4, 1);
  const auto c = torch::sigmoid(chunks[1]) * state.c + torch::sigmoid(chunks[0]) * torch::tanh(chunks[2]);
  return {torch::sigmoid(chunks[3]) * torch::tanh(c), c};
}

LstmImpl::LstmImpl(std::int64_t in, std::int64_t hidden, std::int64_t layers, double p)
    : hidden_size(hidden), dropout(p) {
  if (layers < 1) throw ArgumentError("Lstm: needs at least one layer");
  auto list = register_module("cells", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < layers; ++i) {
    cells.push_back(LstmCell(i == 0 ? in : hidden, hidden));
    list->push_back(cells.back());
  }
}
LstmImpl::~LstmImpl() = default;

torch::Tensor LstmImpl::forward(const torch::Tensor& x, std::vector<LstmState> state,
                                std::vector<LstmState>* final_state) {
  if (x.dim() != 3) throw ArgumentError("Lstm: input must be [rows, steps, features]");
  if (state.empty()) {
    const auto zeros = torch::zeros({x.size(0), hidden_size}, x.options());
    state.assign(cells.size(), LstmState{zeros, zeros});
  }
  std::vector<torch::Tensor> outputs;
  outputs.reserve(static_cast<std::size_t>(x.size(1)));
  for (std::int64_t t = 0; t < x.size(1); ++t) {
    torch::Tensor h = x.select(1, t);
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i > 0 && dropout > 0.0) h = torch::dropout(h, dropout, is_training());
      state[i] = cells[i]->forward(h, state[i]);
      h = state[i].h;
    }
    outputs.push_back(h);
  }
  if (final_state) *final_state = state;
  return torch::stack(outputs, 1);
}

// ---------------------------------------------------------------- attention

MultiHeadAttentionImpl::MultiHeadAttentionImpl(std::int64_t d, std::int64_t h, double p)
    : dim(d), heads(h), dropout(p) {
  if (h < 1 || d % h != 0) throw ArgumentError("MultiHeadAttention: dim " + std::to_string(d) + " does not split into " +
                                       std::to_string(h) + " heads");
  data_to_q = register_module("data_to_q", Linear(d, d, /*bias=*/false));
  data_to_kv = register_module("data_to_kv", Linear(d, 2 * d, /*bias=*/false));
  multi_head_merge = register_module("multi_head_merge", Linear(d, d, /*bias=*/false));
  torch::NoGradGuard g;
  torch::nn::init::xavier_uniform_(multi_head_merge->weight);
  torch::nn::init::xavier_uniform_(data_to_q->weight);
  torch::nn::init::xavier_uniform_(data_to_kv->weight.narrow(0, 0, d));
  torch::nn::init::xavier_uniform_(data_to_kv->weight.narrow(0, d, d));
}
MultiHeadAttentionImpl::~MultiHeadAttentionImpl() = default;

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& memory,
                                              const torch::Tensor& key_padding, const torch::Tensor& causal) {
  return attend(query, keys_values(memory), key_padding, causal);
}

torch::Tensor MultiHeadAttentionImpl::keys_values(const torch::Tensor& memory) { return data_to_kv(memory); }

namespace {
/// Scaled dot-product attention of the projected queries `q` [rows, Tq, d] over `kv` [rows, Tk, 2d]
/// → the heads' outputs [rows, Tq, d], before multi_head_merge.
torch::Tensor mix_heads(const MultiHeadAttentionImpl& a, const torch::Tensor& q_proj, const torch::Tensor& memory_kv,
                        const torch::Tensor& key_padding, const torch::Tensor& causal) {
  const auto rows = q_proj.size(0), tq = q_proj.size(1), tk = memory_kv.size(1), heads = a.heads, p = a.dim / heads;
  // [rows, T, heads, (2,) P] → [rows·heads, T, (2,) P]
  const auto kv = memory_kv.view({rows, tk, heads, 2, p}).permute({0, 2, 1, 3, 4}).reshape({rows * heads, tk, 2, p});
  const auto q = q_proj.view({rows, tq, heads, p}).permute({0, 2, 1, 3}).reshape({rows * heads, tq, p});
  auto logits = torch::bmm(q, kv.select(2, 0).transpose(1, 2)).mul_(1.0 / std::sqrt(static_cast<double>(p)));
  if (causal.defined() || key_padding.defined()) {
    auto l4 = logits.view({rows, heads, tq, tk});
    const double ninf = -std::numeric_limits<double>::infinity();
    if (causal.defined()) l4 = l4.masked_fill(causal.view({1, 1, tq, tk}), ninf);
    if (key_padding.defined()) l4 = l4.masked_fill(key_padding.view({rows, 1, 1, tk}), ninf);
    logits = l4.view({rows * heads, tq, tk});
  }
  auto scores = torch::dropout(torch::softmax(logits, -1), a.dropout, a.is_training());
  MacCounter::add(2 * rows * heads * tq * tk * p);
  const auto mixed = torch::bmm(scores, kv.select(2, 1));  // [rows·heads, tq, P]
  return mixed.view({rows, heads, tq, p}).permute({0, 2, 1, 3}).reshape({rows, tq, a.dim});
}

/// The real (not padding) positions of a [rows, T] padding mask. The position-wise layers run on
/// those only, as [N, c] rows; attention unpacks its queries, keys and values to [rows, T, c] with
/// zeros at the padding. Inactive (everything computed at every position) without padding and
/// while K samples are folded into the rows (a K-batched layer needs its rows in K equal blocks).
class Packing {
 public:
  explicit Packing(const torch::Tensor& padding) {
    if (!padding.defined() || folded_samples() != 1 || padding.dim() != 2) return;
    const auto real = padding.logical_not().reshape({-1});
    if (real.all().item<bool>()) return;
    index_ = real.nonzero().squeeze(1);
    rows_ = padding.size(0);
    steps_ = padding.size(1);
  }
  bool active() const { return index_.defined(); }
  /// [rows, T, c] → [N, c]
  torch::Tensor pack(const torch::Tensor& x) const { return x.reshape({-1, x.size(-1)}).index_select(0, index_); }
  /// [N, c] → [rows, T, c], zero at the padding
  torch::Tensor unpack(const torch::Tensor& x) const {
    return torch::zeros({rows_ * steps_, x.size(-1)}, x.options()).index_copy(0, index_, x).view({rows_, steps_, x.size(-1)});
  }

 private:
  torch::Tensor index_;
  std::int64_t rows_ = 0, steps_ = 0;
};

/// Attention of the packed query rows `query` [N, d] (positions of `pk`) over `memory_kv` [rows, Tk, 2d] → [N, d].
torch::Tensor attend_packed(MultiHeadAttentionImpl& a, const torch::Tensor& query, const Packing& pk,
                            const torch::Tensor& memory_kv, const torch::Tensor& key_padding,
                            const torch::Tensor& causal) {
  return a.multi_head_merge(pk.pack(mix_heads(a, pk.unpack(a.data_to_q(query)), memory_kv, key_padding, causal)));
}
}  // namespace

torch::Tensor MultiHeadAttentionImpl::attend(const torch::Tensor& query, const torch::Tensor& memory_kv,
                                             const torch::Tensor& key_padding, const torch::Tensor& causal) {
  return multi_head_merge(mix_heads(*this, data_to_q(query), memory_kv, key_padding, causal));
}

// ---------------------------------------------------------------- Transformer

namespace {
/// linear1 Xavier-uniform with the ReLU gain, linear2 with gain 1 (the reference's init).
void init_feed_forward(Linear& l1, Linear& l2) {
  torch::NoGradGuard g;
  torch::nn::init::xavier_uniform_(l1->weight, std::sqrt(2.0));
  torch::nn::init::xavier_uniform_(l2->weight);
}

/// Residual add and norm after the attention output `attended`, then the feed-forward block.
torch::Tensor encoder_block(TransformerEncoderLayerImpl& l, const torch::Tensor& x, const torch::Tensor& attended) {
  const bool train = l.is_training();
  auto h = l.norm1(x + torch::dropout(attended, l.dropout, train));
  const auto ff = l.linear2(torch::dropout(torch::relu(l.linear1(h)), l.dropout, train));
  return l.norm2(h + torch::dropout(ff, l.dropout, train));
}
}  // namespace

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(std::int64_t d, std::int64_t h, std::int64_t ff, double p)
    : dropout(p) {
  self_attn = register_module("self_attn", MultiHeadAttention(d, h, p));
  linear1 = register_module("linear1", Linear(d, ff));
  linear2 = register_module("linear2", Linear(ff, d));
  norm1 = register_module("norm1", LayerNorm(d));
  norm2 = register_module("norm2", LayerNorm(d));
  init_feed_forward(linear1, linear2);
}
TransformerEncoderLayerImpl::~TransformerEncoderLayerImpl() = default;

torch::Tensor TransformerEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& key_padding) {
  return encoder_block(*this, x, self_attn->forward(x, x, key_padding));
}

TransformerDecoderLayerImpl::TransformerDecoderLayerImpl(std::int64_t d, std::int64_t h, std::int64_t ff, double p)
    : dropout(p) {
  self_attn = register_module("self_attn", MultiHeadAttention(d, h, p));
  cross_attn = register_module("cross_attn", MultiHeadAttention(d, h, p));
  linear1 = register_module("linear1", Linear(d, ff));
  linear2 = register_module("linear2", Linear(ff, d));
  norm1 = register_module("norm1", LayerNorm(d));
  norm2 = register_module("norm2", LayerNorm(d));
  norm3 = register_module("norm3", LayerNorm(d));
  init_feed_forward(linear1, linear2);
}
TransformerDecoderLayerImpl::~TransformerDecoderLayerImpl() = default;

namespace {
/// Where a decoder layer's queries come from: rows [rows, T, d] (`packing` inactive) or the real
/// positions [N, d] of `packing`; the keys and values are [rows, T, 2d] either way.
struct DecoderInputs {
  const torch::Tensor& self_kv;
  const torch::Tensor& memory_kv;
  const torch::Tensor& self_padding;
  const torch::Tensor& causal;
  const torch::Tensor& memory_padding;
  const Packing* packing = nullptr;
};

/// A decoder layer on the query rows `x`, given the self-attention and memory keys and values.
torch::Tensor decoder_layer(TransformerDecoderLayerImpl& l, const torch::Tensor& x, const DecoderInputs& in) {
  const bool train = l.is_training();
  const double dropout = l.dropout;
  auto attend = [&](MultiHeadAttentionImpl& a, const torch::Tensor& q, const torch::Tensor& kv,
                    const torch::Tensor& padding, const torch::Tensor& causal) {
    return in.packing ? attend_packed(a, q, *in.packing, kv, padding, causal) : a.attend(q, kv, padding, causal);
  };
  auto h = l.norm1(x + torch::dropout(attend(*l.self_attn, x, in.self_kv, in.self_padding, in.causal), dropout, train));
  h = l.norm2(h + torch::dropout(attend(*l.cross_attn, h, in.memory_kv, in.memory_padding, {}), dropout, train));
  const auto ff = l.linear2(torch::dropout(torch::relu(l.linear1(h)), dropout, train));
  return l.norm3(h + torch::dropout(ff, dropout, train));
}
}  // namespace

torch::Tensor TransformerDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& memory,
                                                   const torch::Tensor& causal, const torch::Tensor& memory_padding) {
  return decoder_layer(*this, x, {self_attn->keys_values(x), cross_attn->keys_values(memory), {}, causal, memory_padding});
}

torch::Tensor TransformerDecoderLayerImpl::step(const torch::Tensor& x, torch::Tensor& self_kv,
                                                const torch::Tensor& memory_kv, const torch::Tensor& memory_padding) {
  const auto kv = self_attn->keys_values(x);
  self_kv = self_kv.defined() ? torch::cat({self_kv, kv}, 1) : kv;
  return decoder_layer(*this, x, {self_kv, memory_kv, {}, {}, memory_padding});
}

TransformerImpl::TransformerImpl(std::int64_t d, std::int64_t h, std::int64_t enc, std::int64_t dec, std::int64_t ff,
                                 double p) {
  auto enc_list = register_module("encoder", torch::nn::ModuleList());
  auto dec_list = register_module("decoder", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < enc; ++i) {
    encoder.push_back(TransformerEncoderLayer(d, h, ff, p));
    enc_list->push_back(encoder.back());
  }
  for (std::int64_t i = 0; i < dec; ++i) {
    decoder.push_back(TransformerDecoderLayer(d, h, ff, p));
    dec_list->push_back(decoder.back());
  }
}
TransformerImpl::~TransformerImpl() = default;

torch::Tensor TransformerImpl::encode(const torch::Tensor& src, const torch::Tensor& src_padding) {
  const Packing pk(src_padding);
  if (!pk.active()) {
    auto h = src;
    for (auto& layer : encoder) h = layer->forward(h, src_padding);
    return h;
  }
  auto h = pk.pack(src);
  for (auto& layer : encoder) {
    auto& attn = *layer->self_attn;
    h = encoder_block(*layer, h, attend_packed(attn, h, pk, pk.unpack(attn.keys_values(h)), src_padding, {}));
  }
  return pk.unpack(h);
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& tgt, const torch::Tensor& memory,
                                      const torch::Tensor& src_padding) {
  return decode(tgt, memory, src_padding, {});
}

torch::Tensor TransformerImpl::decode(const torch::Tensor& tgt, const torch::Tensor& memory,
                                      const torch::Tensor& src_padding, const torch::Tensor& tgt_padding) {
  const auto causal = causal_mask(tgt.size(1), tgt.device());
  const Packing pt(tgt_padding), ps(src_padding);
  auto h = pt.active() ? pt.pack(tgt) : tgt;
  for (auto& layer : decoder) {
    const auto self_kv = pt.active() ? pt.unpack(layer->self_attn->keys_values(h)) : layer->self_attn->keys_values(h);
    const auto memory_kv = ps.active() ? ps.unpack(layer->cross_attn->keys_values(ps.pack(memory)))
                                       : layer->cross_attn->keys_values(memory);
    h = decoder_layer(*layer, h, {self_kv, memory_kv, tgt_padding, causal, src_padding, pt.active() ? &pt : nullptr});
  }
  return pt.active() ? pt.unpack(h) : h;
}

torch::Tensor TransformerImpl::decode_step(DecodeCache& cache, const torch::Tensor& x, const torch::Tensor& memory,
                                           const torch::Tensor& src_padding) {
  if (cache.memory_kv.empty())
    for (auto& layer : decoder) cache.memory_kv.push_back(layer->cross_attn->keys_values(memory));
  cache.self_kv.resize(decoder.size());
  auto h = x;
  for (std::size_t l = 0; l < decoder.size(); ++l) h = decoder[l]->step(h, cache.self_kv[l], cache.memory_kv[l], src_padding);
  return h;
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& src, const torch::Tensor& tgt,
                                       const torch::Tensor& src_padding) {
  return decode(tgt, encode(src, src_padding), src_padding);
}

torch::Tensor causal_mask(std::int64_t steps, const torch::Device& device) {
  return torch::ones({steps, steps}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

}  // namespace modlab::nn
