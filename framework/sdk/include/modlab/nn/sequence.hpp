#pragma once
/// @file nn/sequence.hpp
/// Recurrent and attention layers built on the maskable layers of nn/layers.hpp: every parameter
/// takes overrides, with K samples folded into the batch (rows = dimension 0 of every input).

#include <modlab/export.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace modlab::nn {

/// Hidden and cell state of one LSTM layer, each [rows, hidden].
struct MODLAB_API LstmState {
  torch::Tensor h, c;
};

/// The LSTM cell of the masked-analysis reference: gates = W_ih x + W_hh h + b, chunked into input,
/// forget, cell and output gates (in that order). Parameters weight_ih [4H, in], weight_hh [4H, H],
/// bias [4H]. Initialisation: bias 0 with the forget block 1; W_hh ~ N(0, 1/(2H)); W_ih ~
/// N(0, 1/(in + H)); the cell block of W_hh orthogonal with gain 5/3/√2; the cell block of W_ih
/// scaled by 5/3 (the tanh over the sigmoid gain).
class MODLAB_API LstmCellImpl : public torch::nn::Module, public Overridable {
 public:
  LstmCellImpl(std::int64_t in, std::int64_t hidden);
  ~LstmCellImpl() override;
  /// One step: x [rows, in], state → new state (h is the output).
  LstmState forward(const torch::Tensor& x, const LstmState& state);
  void reset_parameters();
  std::int64_t input_size, hidden_size;
  torch::Tensor weight_ih, weight_hh, bias;
};
TORCH_MODULE(LstmCell);

/// A stack of LstmCells run over time, batch first: x [rows, T, in] → outputs [rows, T, H] of the
/// last layer, with dropout between layers in training mode. Cells are "cells.<i>".
class MODLAB_API LstmImpl : public torch::nn::Module {
 public:
  LstmImpl(std::int64_t in, std::int64_t hidden, std::int64_t layers, double dropout = 0.0);
  ~LstmImpl() override;
  /// With an empty `state`, every layer starts from zeros. The final state of each layer goes to
  /// `final_state` when given.
  torch::Tensor forward(const torch::Tensor& x, std::vector<LstmState> state = {},
                        std::vector<LstmState>* final_state = nullptr);
  std::int64_t hidden_size;
  double dropout;
  std::vector<LstmCell> cells;
};
TORCH_MODULE(Lstm);

/// Multi-head attention with the projections of the masked-analysis reference, all bias-free
/// Linears: data_to_q [H·P ← d], data_to_kv [2·H·P ← d] (per head: its key, then its value),
/// multi_head_merge [d ← H·P], P = d / heads; Xavier-uniform initialisation.
class MODLAB_API MultiHeadAttentionImpl : public torch::nn::Module {
 public:
  MultiHeadAttentionImpl(std::int64_t dim, std::int64_t heads, double dropout = 0.1);
  ~MultiHeadAttentionImpl() override;
  /// `query` [rows, Tq, d] attends to `memory` [rows, Tk, d] → [rows, Tq, d]. `key_padding` [rows, Tk]
  /// (true = padding, never attended) and `causal` [Tq, Tk] (true = masked) are optional.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& memory,
                        const torch::Tensor& key_padding = {}, const torch::Tensor& causal = {});
  /// The keys and values of `memory` [rows, Tk, d] (data_to_kv, [rows, Tk, 2d]), to reuse for many queries.
  torch::Tensor keys_values(const torch::Tensor& memory);
  /// forward() with the memory's keys_values computed beforehand.
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& kv, const torch::Tensor& key_padding = {},
                       const torch::Tensor& causal = {});
  std::int64_t dim, heads;
  double dropout;
  Linear data_to_q{nullptr}, data_to_kv{nullptr}, multi_head_merge{nullptr};
};
TORCH_MODULE(MultiHeadAttention);

/// Post-norm Transformer encoder layer: x = norm1(x + attn(x, x)); x = norm2(x + ff(x)), ff =
/// linear2(dropout(relu(linear1(x)))).
class MODLAB_API TransformerEncoderLayerImpl : public torch::nn::Module {
 public:
  TransformerEncoderLayerImpl(std::int64_t dim, std::int64_t heads, std::int64_t ff, double dropout = 0.1);
  ~TransformerEncoderLayerImpl() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_padding = {});
  MultiHeadAttention self_attn{nullptr};
  Linear linear1{nullptr}, linear2{nullptr};
  LayerNorm norm1{nullptr}, norm2{nullptr};
  double dropout;
};
TORCH_MODULE(TransformerEncoderLayer);

/// Post-norm Transformer decoder layer: causal self-attention, attention to the encoder memory,
/// feed-forward, each followed by a residual add and a LayerNorm.
class MODLAB_API TransformerDecoderLayerImpl : public torch::nn::Module {
 public:
  TransformerDecoderLayerImpl(std::int64_t dim, std::int64_t heads, std::int64_t ff, double dropout = 0.1);
  ~TransformerDecoderLayerImpl() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& memory, const torch::Tensor& causal,
                        const torch::Tensor& memory_padding = {});
  /// The layer's output at the next position `x` [rows, 1, d] only: `self_kv` holds the
  /// self-attention keys and values of the earlier positions (undefined at the first; this call
  /// appends x's), `memory_kv` cross_attn->keys_values(memory). Equals the last row of forward()
  /// over all positions so far.
  torch::Tensor step(const torch::Tensor& x, torch::Tensor& self_kv, const torch::Tensor& memory_kv,
                     const torch::Tensor& memory_padding = {});
  MultiHeadAttention self_attn{nullptr}, cross_attn{nullptr};
  Linear linear1{nullptr}, linear2{nullptr};
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  double dropout;
};
TORCH_MODULE(TransformerDecoderLayer);

/// Encoder-decoder Transformer: `encoder_layers` encoder and `decoder_layers` decoder layers
/// ("encoder.<i>", "decoder.<i>"), no final norm (as the reference).
class MODLAB_API TransformerImpl : public torch::nn::Module {
 public:
  TransformerImpl(std::int64_t dim, std::int64_t heads, std::int64_t encoder_layers, std::int64_t decoder_layers,
                  std::int64_t ff, double dropout = 0.1);
  ~TransformerImpl() override;
  /// src [rows, Ts, d], tgt [rows, Tt, d] → [rows, Tt, d]; decoder position t sees targets ≤ t only.
  ///
  /// Padding masks ([rows, T], true = padding) are optional. Given one, the position-wise layers
  /// (projections, feed-forward, norms) run on the real positions only, and the output is zero at
  /// the padding (unless K samples are folded: then every position is computed as without it).
  /// Source padding is never attended; `tgt_padding` positions are not attended either.
  torch::Tensor forward(const torch::Tensor& src, const torch::Tensor& tgt, const torch::Tensor& src_padding = {});
  torch::Tensor encode(const torch::Tensor& src, const torch::Tensor& src_padding = {});
  torch::Tensor decode(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& src_padding = {});
  torch::Tensor decode(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& src_padding,
                       const torch::Tensor& tgt_padding);
  /// What incremental decoding keeps per decoder layer: the keys and values of the earlier target
  /// positions and of the encoder memory.
  struct DecodeCache {
    std::vector<torch::Tensor> self_kv, memory_kv;
  };
  /// Incremental decoding (greedy or beam search without recomputing earlier positions): `x`
  /// [rows, 1, d] is the input at the next target position; `cache` starts empty and is updated.
  /// Returns the output at that position, equal to the last row of decode() over all positions so far.
  torch::Tensor decode_step(DecodeCache& cache, const torch::Tensor& x, const torch::Tensor& memory,
                            const torch::Tensor& src_padding = {});
  std::vector<TransformerEncoderLayer> encoder;
  std::vector<TransformerDecoderLayer> decoder;
};
TORCH_MODULE(Transformer);

/// [T, T] bool mask, true above the diagonal: position t may not attend to positions after t.
MODLAB_API torch::Tensor causal_mask(std::int64_t steps, const torch::Device& device = torch::kCPU);

}  // namespace modlab::nn
