// The masked_analyzer plugin: the analyzer and the networks of its reference experiments.
#include "analyzer.hpp"
#include "targets.hpp"

#include <modlab/plugin.hpp>

namespace modlab::masked {
namespace {

std::shared_ptr<Model> make_analyzer(const Config& c, const DatasetSpec& spec, Host& host) {
  AnalyzerOptions o = analyzer_options().parse(c);
  o.table = c;
  return std::make_shared<Analyzer>(o, spec, host);
}

void register_plugin(Registrar& r) {
  ModelEntry a;
  a.name = "masked_analyzer";
  a.description = "differentiable weight masks per sub-task on any model (Csordas et al. 2021)";
  a.keys = analyzer_options().specs();
  a.factory = &make_analyzer;
  a.check = &check_analyzer;
  a.variants = {"inner = { plugin = \"mask_fnn\", layer_sizes = [16, 16] }",
                "inner = { plugin = \"mask_fnn\", layer_sizes = [16] }\nbias_no_mask = false\nsamples = 2"};
  r.add_model(std::move(a));

  ModelEntry f;
  f.name = "mask_fnn";
  f.description = "ReLU MLP of the mask-analysis experiments (tuple, add/mul, permuted MNIST)";
  f.keys = fnn_options().specs();
  f.factory = &make_fnn;
  f.check = &check_fnn;
  f.variants = {"layer_sizes = [8, 8]\ninit = \"xavier_normal\"", "layer_sizes = [8]\nrun_per_subtask = true"};
  r.add_model(std::move(f));

  ModelEntry l;
  l.name = "mask_lstm";
  l.description = "LSTM of the mask-analysis experiments (reference cell and initialisation)";
  l.keys = lstm_options().specs();
  l.factory = &make_lstm;
  l.check = &check_lstm;
  l.variants = {"state_size = 8\nn_layers = 1"};
  r.add_model(std::move(l));

  ModelEntry t;
  t.name = "mask_transformer";
  t.description = "encoder-decoder Transformer of the DeepMind Mathematics experiments (tied embeddings, greedy decoding)";
  t.keys = transformer_options().specs();
  t.factory = &make_transformer;
  t.check = &check_transformer;
  t.variants = {"dim = 16\nheads = 2\nencoder_layers = 1\ndecoder_layers = 1",
                "dim = 8\nheads = 2\nencoder_layers = 1\ndecoder_layers = 2\ntied_embeddings = false"};
  r.add_model(std::move(t));
}

}  // namespace
}  // namespace modlab::masked

MODLAB_PLUGIN("masked_analyzer", modlab::kModelPlugin, "1.0.0", "differentiable weight masks on any model",
              modlab::masked::register_plugin)
