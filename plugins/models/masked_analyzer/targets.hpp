#pragma once
// The networks the reference analyses (masked_analyzer §4.3), built from modlab::nn layers so that
// every weight can be masked: `mask_fnn`, a ReLU MLP (the tuple and add/mul FNNs, the permuted-MNIST
// FNN) and `mask_lstm`, the reference's LSTM with a linear read-out.
#include <modlab/host.hpp>
#include <modlab/model.hpp>
#include <modlab/options.hpp>

#include <memory>
#include <vector>

namespace modlab::masked {

struct FnnOptions {
  std::vector<std::int64_t> layer_sizes = {800, 800, 256};  ///< hidden layer widths
  std::string init = "torch";                               ///< torch | xavier_normal
  bool run_per_subtask = false;  ///< one run per sub-task with the others' inputs zeroed (the tuple FNN)
};
const Options<FnnOptions>& fnn_options();
std::shared_ptr<Model> make_fnn(const Config& c, const DatasetSpec& spec, Host& host);
/// What the FNN needs of its dataset (class, multi-class or multi-label targets; sub-tasks owning
/// every output with run_per_subtask); ConfigError.
void check_fnn(const Config& c, const DatasetSpec& spec);

struct LstmOptions {
  std::int64_t state_size = 256;  ///< hidden units per layer
  std::int64_t n_layers = 2;      ///< stacked LSTM layers
};
const Options<LstmOptions>& lstm_options();
std::shared_ptr<Model> make_lstm(const Config& c, const DatasetSpec& spec, Host& host);
/// What the LSTM needs of its dataset (inputs [steps, features], class-like targets, valid
/// output_steps); ConfigError.
void check_lstm(const Config& c, const DatasetSpec& spec);

/// The DeepMind Mathematics Transformer (§4.3 f): the reference's d, heads, ff factor and layers.
struct TransformerOptions {
  std::int64_t dim = 512, heads = 8, ff_factor = 4, encoder_layers = 6, decoder_layers = 6;
  double dropout = 0.1;
  bool tied_embeddings = true;
  std::int64_t max_length = 512;  ///< longest question / answer accepted
};
const Options<TransformerOptions>& transformer_options();
std::shared_ptr<Model> make_transformer(const Config& c, const DatasetSpec& spec, Host& host);
/// What the Transformer needs of its dataset (sequences with start and end tokens, no question or
/// answer longer than max_length) and of its options (d even, a multiple of heads); ConfigError.
void check_transformer(const Config& c, const DatasetSpec& spec);

}  // namespace modlab::masked
