// tiny_cnn: a small classifier built from modlab::nn layers, the model of docs/writing-a-model.md.
// Images [C, H, W] go through Conv(3×3, padding 1) → ReLU → 2×2 max pooling; every input is then
// flattened into an MLP with one hidden layer and a logits head.
#include <modlab/errors.hpp>
#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/options.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

namespace tiny {

struct Options {
  std::int64_t channels = 8;  // conv channels (image inputs only)
  std::int64_t hidden = 32;   // hidden units
};

class TinyCnn : public modlab::Model {
 public:
  TinyCnn(const Options& o, const modlab::DatasetSpec& spec) : image_(spec.input_shape.size() == 3) {
    std::int64_t flat = spec.input_numel();
    if (image_) {
      const auto& s = spec.input_shape;  // [C, H, W]
      conv_ = register_module("conv", modlab::nn::Conv2d(s[0], o.channels, 3, /*stride=*/1, /*padding=*/1));
      flat = o.channels * (s[1] / 2) * (s[2] / 2);
    }
    hidden_ = register_module("hidden", modlab::nn::Linear(flat, o.hidden));
    head_ = register_module("head", modlab::nn::Linear(o.hidden, spec.num_classes));
  }

  modlab::Output forward(const modlab::Batch& batch) override {
    auto x = batch.inputs.to(torch::kFloat);
    if (image_) x = torch::relu(modlab::nn::max_pool2x2(conv_(x)));
    x = torch::relu(hidden_(x.flatten(1)));  // rows stay rows: never reshape by a fixed batch size
    modlab::Output out;
    out.prediction = head_(x);
    out.kind = modlab::Output::Kind::Logits;
    return out;
  }

 private:
  bool image_;
  modlab::nn::Conv2d conv_{nullptr};
  modlab::nn::Linear hidden_{nullptr}, head_{nullptr};
};

/// Each key declared once: name, member, doc and the values it accepts; the default is the
/// member's value in `Options{}`.
const modlab::Options<Options>& tiny_options() {
  static const auto o = modlab::Options<Options>()
                            .key("channels", &Options::channels, "conv channels (image inputs only)").at_least(1)
                            .key("hidden", &Options::hidden, "hidden units").at_least(1);
  return o;
}

std::shared_ptr<modlab::Model> make(const modlab::Config& c, const modlab::DatasetSpec& spec, modlab::Host&) {
  if (spec.task != modlab::TaskKind::Classification)
    throw modlab::ConfigError("model 'tiny_cnn' needs a classification dataset");
  return std::make_shared<TinyCnn>(tiny_options().parse(c), spec);
}

void register_tiny(modlab::Registrar& r) {
  modlab::ModelEntry e;
  e.name = "tiny_cnn";
  e.description = "a small CNN / MLP classifier (docs/writing-a-model.md)";
  e.keys = tiny_options().specs();
  e.factory = &make;
  e.variants = {"channels = 4\nhidden = 16"};
  r.add_model(std::move(e));
}

}  // namespace tiny

MODLAB_PLUGIN("tiny_cnn", modlab::kModelPlugin, "1.0.0", "the model of docs/writing-a-model.md", tiny::register_tiny)
