// mask_transformer: the encoder-decoder Transformer of the DeepMind Mathematics experiments
// (masked_analyzer §4.3 f), built from modlab::nn layers so that every weight can be masked.
#include "targets.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/nn/sequence.hpp>

#include <torch/torch.h>

#include <cmath>

namespace modlab::masked {

const Options<TransformerOptions>& transformer_options() {
  using O = TransformerOptions;
  static const auto o =
      Options<O>()
          .key("dim", &O::dim, "model width d").at_least(2)
          .key("heads", &O::heads, "attention heads (d must be a multiple)").at_least(1)
          .key("ff_factor", &O::ff_factor, "feed-forward width = ff_factor · d").at_least(1)
          .key("encoder_layers", &O::encoder_layers, "encoder layers").at_least(1)
          .key("decoder_layers", &O::decoder_layers, "decoder layers").at_least(1)
          .key("dropout", &O::dropout, "dropout in attention, feed-forward and after the embeddings").in_range(0, 1)
          .key("tied_embeddings", &O::tied_embeddings, "one embedding table for questions, answers and the output layer")
          .key("max_length", &O::max_length, "longest question and answer (with <end>) the model accepts").at_least(1);
  return o;
}

namespace {

/// Sinusoidal positions [steps, d] (Vaswani et al.), no parameters.
torch::Tensor positions(std::int64_t steps, std::int64_t d, const torch::TensorOptions& opt) {
  const auto pos = torch::arange(steps, opt).unsqueeze(1);
  const auto freq = torch::exp(torch::arange(0, d, 2, opt) * (-std::log(10000.0) / static_cast<double>(d)));
  auto pe = torch::zeros({steps, d}, opt);
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2)}, torch::sin(pos * freq));
  pe.index_put_({torch::indexing::Slice(), torch::indexing::Slice(1, torch::indexing::None, 2)},
                torch::cos(pos * freq).narrow(1, 0, d / 2));
  return pe;
}

class TransformerNet : public Model {
 public:
  TransformerNet(const TransformerOptions& o, const DatasetSpec& spec) : o_(o), spec_(spec) {
    const auto v = static_cast<std::int64_t>(spec.vocabulary.size());
    embed_ = register_module("embedding", modlab::nn::Embedding(v, o.dim));
    if (!o.tied_embeddings) {
      answer_embed_ = register_module("answer_embedding", modlab::nn::Embedding(v, o.dim));
      out_ = register_module("output", modlab::nn::Linear(o.dim, v));
    }
    net_ = register_module("transformer", modlab::nn::Transformer(o.dim, o.heads, o.encoder_layers, o.decoder_layers,
                                                                  o.ff_factor * o.dim, o.dropout));
    start_ = std::stoll(spec.info.at("start_token"));
    end_ = std::stoll(spec.info.at("end_token"));
  }

  /// Teacher-forced logits [B, La, V] (the decoder reads <start> + the answer shifted right); in
  /// evaluation also the greedy answer, aux "greedy" [B, La].
  Output forward(const Batch& batch) override {
    const auto pad = batch.inputs.eq(spec_.pad_token);
    const auto memory = net_->encode(embed(batch.inputs, *embed_), pad);
    const auto tgt_in = torch::cat({torch::full({batch.size(), 1}, start_, batch.targets.options()),
                                    batch.targets.narrow(1, 0, batch.targets.size(1) - 1)}, 1);
    Output out;
    // positions whose target is padding are left out of the decoder (their logits are zero; the loss ignores them)
    out.prediction = logits(net_->decode(embed(tgt_in, answer_table()), memory, pad, batch.targets.eq(spec_.pad_token)));
    if (!is_training()) out.aux["greedy"] = greedy(memory, pad, batch.targets.size(1));
    return out;
  }

  /// Cross-entropy over the answer tokens (padding ignored).
  Losses loss(const Batch& batch, const Output& out) override {
    const auto v = out.prediction.size(-1);
    return {{"task", torch::nn::functional::cross_entropy(
                         out.prediction.reshape({-1, v}), batch.targets.reshape({-1}),
                         torch::nn::functional::CrossEntropyFuncOptions().ignore_index(spec_.pad_token))}};
  }

  /// Exact match: every answer token and <end> decoded greedily (teacher-forced argmax in training).
  torch::Tensor correct(const Batch& batch, const Output& out) override {
    const auto guess = decoded(out);
    const auto valid = batch.targets.ne(spec_.pad_token);
    return (guess.eq(batch.targets) | ~valid).all(1).to(torch::kFloat);
  }

  void eval_batch(const std::string&, const Batch& batch, const Output& out, MetricSet& metrics) override {
    const auto valid = batch.targets.ne(spec_.pad_token);
    const double n = valid.sum().item<double>();
    if (n > 0) metrics.add("char_accuracy", (decoded(out).eq(batch.targets) & valid).sum().item<double>() / n, n);
  }

 private:
  /// The embedding table the answers and the output layer use, read through the layer so that an
  /// override (a mask, K samples folded) reaches it: [K, V, d].
  torch::Tensor answer_table_rows() {
    auto& e = o_.tied_embeddings ? *embed_ : *answer_embed_;
    const auto k = modlab::nn::folded_samples();
    const auto v = e.num_embeddings;
    return e.forward(torch::arange(v, e.weight.options().dtype(torch::kLong)).repeat({k})).view({k, v, o_.dim});
  }
  modlab::nn::EmbeddingImpl& answer_table() { return o_.tied_embeddings ? *embed_ : *answer_embed_; }

  /// Embeddings plus positions, with dropout. The embeddings are N(0, 1) and not scaled by √d
  /// (the reference's default scale mode "none"): scaled, they drown the positions and the model
  /// cannot tell one place in the question from another.
  torch::Tensor embed(const torch::Tensor& tokens, modlab::nn::EmbeddingImpl& table) {
    const auto x = table.forward(tokens) + positions(tokens.size(1), o_.dim, table.weight.options());
    return torch::dropout(x, o_.dropout, is_training());
  }

  /// Decoder states [B, T, d] → logits [B, T, V]: the tied table's transpose, or the output layer.
  torch::Tensor logits(const torch::Tensor& h) {
    if (!o_.tied_embeddings) return out_->forward(h);
    const auto table = answer_table_rows();  // [K, V, d]
    const auto k = table.size(0);
    return torch::bmm(h.reshape({k, -1, o_.dim}), table.transpose(1, 2)).view({h.size(0), h.size(1), -1});
  }

  /// Greedy decoding for `steps` tokens, one position at a time (the keys and values of earlier
  /// positions and of the memory are kept, not recomputed); a row that produced <end> keeps producing padding.
  torch::Tensor greedy(const torch::Tensor& memory, const torch::Tensor& pad, std::int64_t steps) {
    const auto rows = memory.size(0);
    const auto opt = torch::TensorOptions(memory.device()).dtype(torch::kLong);
    auto out = torch::full({rows, steps}, spec_.pad_token, opt);
    auto next = torch::full({rows}, start_, opt);
    auto done = torch::zeros({rows}, opt.dtype(torch::kBool));
    const auto pe = positions(steps, o_.dim, memory.options());
    modlab::nn::TransformerImpl::DecodeCache cache;
    for (std::int64_t t = 0; t < steps; ++t) {
      const auto x = answer_table().forward(next.unsqueeze(1)) + pe.narrow(0, t, 1);
      next = logits(net_->decode_step(cache, x, memory, pad)).argmax(-1).squeeze(1).masked_fill(done, spec_.pad_token);
      out.select(1, t).copy_(next);
      done = done | next.eq(end_);
      if (done.all().item<bool>()) break;
    }
    return out;
  }

  torch::Tensor decoded(const Output& out) const {
    const auto it = out.aux.find("greedy");
    return it != out.aux.end() ? it->second : out.prediction.argmax(-1);
  }

  TransformerOptions o_;
  DatasetSpec spec_;
  modlab::nn::Embedding embed_{nullptr}, answer_embed_{nullptr};
  modlab::nn::Linear out_{nullptr};
  modlab::nn::Transformer net_{nullptr};
  std::int64_t start_ = 1, end_ = 2;
};

}  // namespace

void check_transformer(const Config& c, const DatasetSpec& spec) {
  const auto o = transformer_options().parse(c);
  if (spec.task != TaskKind::Sequence || spec.vocabulary.empty() || !spec.info.count("start_token") ||
      !spec.info.count("end_token"))
    c.fail("plugin", "model 'mask_transformer' needs a sequence dataset with start and end tokens (dm_math); '" +
                         spec.name + "' is " + task_kind_name(spec.task));
  if (o.dim % o.heads != 0 || o.dim % 2 != 0)
    c.fail("dim", std::to_string(o.dim) + " must be even and a multiple of heads = " + std::to_string(o.heads));
  for (const char* key : {"max_question_length", "max_answer_length"}) {
    const auto it = spec.info.find(key);
    if (it != spec.info.end() && std::stoll(it->second) > o.max_length)
      c.fail("max_length", "dataset " + spec.name + " has " + key + " " + it->second + ", longer than max_length = " +
                               std::to_string(o.max_length) + " (raise it; nothing is truncated)");
  }
}

std::shared_ptr<Model> make_transformer(const Config& c, const DatasetSpec& spec, Host&) {
  check_transformer(c, spec);
  return std::make_shared<TransformerNet>(transformer_options().parse(c), spec);
}

}  // namespace modlab::masked
