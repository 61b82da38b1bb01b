// The `hier_modular` model plugin (hier_modular §5.3): an MLP with fixed random pruning, the
// hierarchically modular network with learned top-k input routing, and its variant whose slots are
// filled from a pool of shared modules chosen by learned locations. The modular models' outputs
// are logits of independent bits (BCE with logits, per-bit accuracy: the SDK defaults for
// multi-label data); the MLP also ends in class logits for classification data (cross-entropy).
//
// The modules of one layer run as one chain of batched matmuls (ModuleBank), never a loop over
// modules; routing is a top-k selection with straight-through one-hot selectors (routing_ops.hpp).
// The true routing of the Boolean tasks and the test of whether a learned routing recovers it up
// to the symmetries of the task live in routing.hpp.
#include "routing.hpp"
#include "routing_ops.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

namespace modlab::hier_modular {
namespace {

std::string list_text(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// Number of tasks: the dataset's task groups (1 when it has none).
std::int64_t task_count(const DatasetSpec& spec) {
  if (spec.group_kind == "task" && !spec.group_names.empty()) return static_cast<std::int64_t>(spec.group_names.size());
  return 1;
}

/// Task id per sample ([B] int64), or an undefined tensor for single-task models.
torch::Tensor task_ids(const Batch& batch, std::int64_t tasks) {
  if (tasks <= 1) return {};
  if (!batch.groups.defined())
    throw DataError("hier_modular: the model has " + std::to_string(tasks) +
                    " tasks but the batch carries no task ids (Batch::groups)");
  return batch.groups;
}

void check_dataset(const DatasetSpec& spec, const std::string& model) {
  if (spec.task != TaskKind::MultiLabel && spec.task != TaskKind::Regression)
    throw ConfigError("model '" + model + "' needs a multi-label dataset (independent output bits), but '" + spec.name +
                      "' is " + task_kind_name(spec.task));
  if (spec.num_outputs < 1 || spec.input_numel() < 1)
    throw ConfigError("model '" + model + "': dataset '" + spec.name + "' has " + std::to_string(spec.input_numel()) +
                      " inputs and " + std::to_string(spec.num_outputs) + " outputs; need >= 1 of each");
}

/// The all-zeros baseline of multi-label data, `<split>_zeros_accuracy`: the per-bit accuracy of
/// predicting 0 for every output (the reference's Boolean tasks are mostly 0, so a model that has
/// learned nothing can score well above 0.5).
void add_zeros_baseline(const Batch& batch, MetricSet& metrics) {
  const auto& t = batch.targets;
  if (t.numel() > 0)
    metrics.add("zeros_accuracy", (t == 0).to(torch::kDouble).mean().item<double>(), static_cast<double>(t.numel()));
}

// ------------------------------------------------------------------------------------------- mlp

/// MLP arch[0] → … → arch[-1] with ReLU hidden layers and a linear head (logits). With
/// `pruning_ratio` q, a fixed random mask: of all N weights of all layers, the round(q·N/100) with
/// the lowest uniform random scores (one global q-th percentile) are zeroed once; a bias is
/// zeroed when its whole weight row is pruned. Pruned entries get zero gradients, so they stay zero
/// under every optimizer the trainer offers (L2 decay of a zero weight is zero).
class MlpModel : public Model {
 public:
  /// `classes_per_output` > 0 (MultiClass data): the head's logits are read as [B, outputs, classes].
  /// `multi_label`: the outputs are independent bits (the zeros baseline is recorded).
  MlpModel(const std::vector<std::int64_t>& arch, double pruning_ratio, std::int64_t tasks, std::int64_t classes_per_output,
           bool multi_label)
      : tasks_(tasks), classes_per_output_(classes_per_output), multi_label_(multi_label), pruning_ratio_(pruning_ratio) {
    for (std::size_t i = 0; i + 1 < arch.size(); ++i)
      layers_.push_back(register_module("fc" + std::to_string(i), modlab::nn::Linear(arch[i], arch[i + 1])));
    if (pruning_ratio_ > 0.0) prune();
  }

  Output forward(const Batch& batch) override {
    auto x = batch.inputs.reshape({batch.inputs.size(0), -1}).to(layers_.front()->weight.scalar_type());
    // Multi-task: the task id is appended as one more input (as the reference's MLP does).
    if (tasks_ > 1) x = torch::cat({x, task_ids(batch, tasks_).to(x.dtype()).unsqueeze(1)}, 1);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      x = layers_[i]->forward(x);
      if (i + 1 < layers_.size()) x = torch::relu(x);
    }
    Output out;
    out.prediction = classes_per_output_ > 0 ? x.view({x.size(0), -1, classes_per_output_}) : x;
    out.kind = Output::Kind::Logits;
    return out;
  }

  void eval_batch(const std::string&, const Batch& batch, const Output&, MetricSet& metrics) override {
    if (multi_label_) add_zeros_baseline(batch, metrics);
  }

  void record(Recorder& recorder) override {
    if (masks_.empty()) return;
    std::int64_t pruned = 0, total = 0;
    for (std::size_t i = 0; i < masks_.size(); ++i) {
      recorder.tensor("pruning.mask" + std::to_string(i), masks_[i].to(torch::kBool), {"out", "in"});
      pruned += (masks_[i] == 0).sum().item<std::int64_t>();
      total += masks_[i].numel();
    }
    recorder.note("pruned_weights", std::to_string(pruned) + " of " + std::to_string(total));
  }

 private:
  void prune() {
    torch::NoGradGuard no_grad;
    const auto masks = prune_masks();
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      auto& w = layers_[i]->weight;
      auto& b = layers_[i]->bias;
      const auto mask = masks[i].view_as(w).to(w.scalar_type());
      auto bias_mask = (mask.sum(1) > 0).to(w.scalar_type());
      w.mul_(mask);
      b.mul_(bias_mask);
      masks_.push_back(register_buffer("prune_mask" + std::to_string(i), mask));
      bias_masks_.push_back(register_buffer("prune_bias_mask" + std::to_string(i), bias_mask));
      // The hooks hold the buffers themselves, which follow the module across devices.
      const auto m = masks_.back(), bm = bias_masks_.back();
      w.register_hook([m](const torch::Tensor& g) { return g * m; });
      b.register_hook([bm](const torch::Tensor& g) { return g * bm; });
    }
  }

  /// One uniform score per weight over all layers; the round(q·N/100) lowest of the N scores (one
  /// global q-th percentile, as the reference thresholds) are pruned. Flat masks, one per layer.
  std::vector<torch::Tensor> prune_masks() const {
    std::vector<std::int64_t> sizes;
    for (const auto& l : layers_) sizes.push_back(l->weight.numel());
    const std::int64_t n = std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0});
    const auto cut = static_cast<std::int64_t>(std::llround(pruning_ratio_ / 100.0 * static_cast<double>(n)));
    auto keep = torch::ones({n}, torch::kBool);
    if (cut > 0) keep.index_fill_(0, torch::rand({n}).argsort().slice(0, 0, cut), false);
    return keep.split_with_sizes(sizes);
  }

  std::int64_t tasks_;
  std::int64_t classes_per_output_;
  bool multi_label_;
  double pruning_ratio_;
  std::vector<modlab::nn::Linear> layers_;
  std::vector<torch::Tensor> masks_, bias_masks_;
};

/// The `[model]` table of the plain MLP.
struct MlpOptions {
  std::vector<std::int64_t> arch;  ///< [] = [inputs, 36, 36, 36, outputs]
  double pruning_ratio = 0.0;
};

const Options<MlpOptions>& mlp_options() {
  static const auto o =
      Options<MlpOptions>()
          .key("arch", &MlpOptions::arch,
               "layer widths [inputs, hidden..., outputs]; [] = [inputs, 36, 36, 36, outputs] (inputs + 1 with several "
               "tasks: the task id is appended)")
          .at_least(1)
          .key("pruning_ratio", &MlpOptions::pruning_ratio,
               "percent q of all weights pruned at random (one global percentile over the layers), fixed at initialisation")
          .in_range(0, 100);
  return o;
}

/// Logits the MLP ends in: one per class (Classification), per output and class (MultiClass), per
/// output (MultiLabel, Regression).
std::int64_t mlp_outputs(const DatasetSpec& spec) {
  if (spec.task == TaskKind::Classification) return spec.num_classes;
  if (spec.task == TaskKind::MultiClass) return spec.num_outputs * spec.num_classes;
  return spec.num_outputs;
}

/// The layer widths for a dataset; ConfigError at `arch` when they do not fit it, or at `plugin`
/// for a dataset the MLP cannot read (token sequences).
std::vector<std::int64_t> mlp_arch(const Config& c, const DatasetSpec& spec) {
  if (spec.task == TaskKind::Sequence)
    c.fail("plugin", "model 'mlp' needs fixed-size inputs, but dataset '" + spec.name +
                         "' gives token sequences (mask_transformer reads them)");
  const std::int64_t tasks = task_count(spec);
  const std::int64_t in = spec.input_numel() + (tasks > 1 ? 1 : 0), out = mlp_outputs(spec);
  if (in < 1 || out < 1)
    c.fail("plugin", "dataset '" + spec.name + "' has " + std::to_string(in) + " inputs and " + std::to_string(out) +
                         " outputs; the MLP needs >= 1 of each");
  const MlpOptions o = mlp_options().parse(c);
  auto arch = o.arch.empty() ? std::vector<std::int64_t>{in, 36, 36, 36, out} : o.arch;
  if (arch.size() < 2) c.fail("arch", "expected at least [inputs, outputs], got " + list_text(arch));
  if (arch.front() != in)
    c.fail("arch", "first width must be the number of inputs " + std::to_string(in) +
                       (tasks > 1 ? " (features + the appended task id)" : "") + ", got " + list_text(arch));
  if (arch.back() != out)
    c.fail("arch", "last width must be the number of outputs " + std::to_string(out) +
                       (spec.task == TaskKind::MultiClass ? " (outputs × classes)" : "") + ", got " + list_text(arch));
  return arch;
}

void check_mlp(const Config& c, const DatasetSpec& spec) { mlp_arch(c, spec); }

std::shared_ptr<Model> make_mlp(const Config& c, const DatasetSpec& spec, Host&) {
  const auto arch = mlp_arch(c, spec);
  return std::make_shared<MlpModel>(arch, mlp_options().parse(c).pruning_ratio, task_count(spec),
                                    spec.task == TaskKind::MultiClass ? spec.num_classes : 0,
                                    spec.task == TaskKind::MultiLabel);
}

// ------------------------------------------------------------------------------- modular models

/// The resolved `[model]` table of the two modular models.
struct ModularOptions {
  bool shared = false;
  std::vector<std::int64_t> layers;  ///< modules (or slots) per hidden layer
  std::vector<std::int64_t> module_arch = {2, 12, 1};
  std::int64_t topk = 2;
  double tau = 1.0;
  bool use_gumbel = false;
  bool per_sample_routing = false;
  std::string routing_init = "randn";
  bool known_module_inputs = false;
  bool known_func_outputs = false;
  double lr_module_input = 0.0;
  // shared modules only
  std::int64_t num_shared_modules = 0;
  bool known_module_locations = false;
  std::string location_init = "randn";
  double lr_module_location = 0.0;
  double location_tau = 0.0;    ///< 0 = tau
  bool location_noise = false;  ///< noise also without use_gumbel
  // image modules (datasets of image pairs, e.g. rotated_mnist mode = "digit_pairs"; §5.2)
  std::vector<std::int64_t> image_arch;  ///< [pixels, hidden..., bits]; [] = [pixels, 128, 64, bits]
  bool known_image_inputs = false;
  double image_tau = 1.0;
  bool image_noise = true;
  std::vector<std::int64_t> structure;  ///< the task structure; [] = the dataset's
};

/// What the model is built against: widths, tasks and (when the structure is a known Boolean task)
/// the true routing of every task.
struct Layout {
  std::int64_t inputs = 0, outputs = 0, tasks = 1;
  /// Image inputs (§5.2): `images` images of `image_pixels` values each, each read by one image
  /// module that emits `image_bits` values; `inputs` is then images × image_bits. 0 = flat inputs.
  std::int64_t images = 0, image_bits = 0, image_pixels = 0;
  std::vector<std::int64_t> structure;
  std::vector<Routing> truth;  ///< one per task; empty when the true routing is unknown
  std::string no_truth_reason;
};

/// The keys of the modular models; the shared-modules model has slots and a module pool.
Options<ModularOptions> declare_modular(bool shared) {
  using O = ModularOptions;
  Options<O> o;
  if (shared) {
    o.key("num_slots", &O::layers,
          "slots per hidden layer; [] = the dataset structure's hidden widths ([3, 2] for [6,3,2,2])")
        .at_least(1)
        .key("num_shared_modules", &O::num_shared_modules,
             "size S of the shared module pool; 0 = one per hidden layer (the true tables' count)")
        .at_least(0);
  } else {
    o.key("num_modules", &O::layers,
          "modules per hidden layer; [] = the dataset structure's hidden widths ([3, 2] for [6,3,2,2])")
        .at_least(1);
  }
  o.key("module_arch", &O::module_arch, "module MLP widths [topk, hidden..., 1], ReLU between layers, no output activation")
      .at_least(1)
      .key("topk", &O::topk, "inputs k each module selects (top-k of its routing logits)").at_least(1)
      .key("tau", &O::tau, "routing temperature: s = sigmoid((R + G)/tau) in training (1 = None)").greater_than(0).finite()
      .per_member()
      .key("use_gumbel", &O::use_gumbel, "add Gumbel noise to learned routing logits in training")
      .key("per_sample_routing", &O::per_sample_routing,
           "index routing logits per sample by task id and sample the noise per sample (else once per batch)")
      .key("routing_init", &O::routing_init,
           "randn | known: routing logits start at N(0,1) or at the true routing (1.1 / 1.0 on its inputs)")
      .choices({"randn", "known"})
      .key("known_module_inputs", &O::known_module_inputs,
           "fix the input and output routing at the true one; only modules (and locations) train")
      .key("known_func_outputs", &O::known_func_outputs, "fix the output routing at the true one")
      .key("lr_module_input", &O::lr_module_input,
           "learning rate of the routing group (input + output routing logits); 0 = train.lr")
      .at_least(0).finite().per_member()
      .key("structure", &O::structure, "task structure, e.g. [6, 3, 2, 2]; [] = the dataset's (toy/boolean records it)")
      .at_least(1)
      .key("image_arch", &O::image_arch,
           "image inputs only: image module MLP widths [pixels, hidden..., bits]; [] = [pixels, 128, 64, bits]")
      .at_least(1)
      .key("known_image_inputs", &O::known_image_inputs,
           "image inputs only: image module m reads image m (fixed) instead of a learned selection")
      .key("image_tau", &O::image_tau, "image inputs only: temperature of the image-selection Gumbel-softmax")
      .greater_than(0).finite()
      .key("image_noise", &O::image_noise, "image inputs only: Gumbel noise on the learned image selection in training");
  if (shared) {
    o.key("known_module_locations", &O::known_module_locations, "fix each slot's module at the true one")
        .key("location_init", &O::location_init, "randn | known: location logits start at N(0,1) or at 1 on the true module")
        .choices({"randn", "known"})
        .key("lr_module_location", &O::lr_module_location, "learning rate of the locations group; 0 = train.lr")
        .at_least(0).finite().per_member()
        .key("location_tau", &O::location_tau,
             "temperature of the location softmax in training; 0 = tau, the routing temperature (as the reference)")
        .at_least(0).finite()
        .key("location_noise", &O::location_noise,
             "Gumbel noise on learned location logits in training even without use_gumbel (the reference adds it "
             "only with use_gumbel; without noise: straight-through argmax)");
  }
  return o;
}

const Options<ModularOptions>& modular_options(bool shared) {
  static const auto plain = declare_modular(false), with_pool = declare_modular(true);
  return shared ? with_pool : plain;
}

ModularOptions read_modular(const Config& c, bool shared, Layout& layout) {
  ModularOptions o = modular_options(shared).parse(c);
  o.shared = shared;
  if (layout.images == 0)
    for (const char* k : {"image_arch", "known_image_inputs", "image_tau", "image_noise"})
      if (c.has(k)) c.fail(k, "only applies to datasets of images that record `images` and `image_bits` in their info "
                              "(rotated_mnist mode = \"digit_pairs\")");
  // The structure: the model's `structure` key; the caller falls back to the dataset's.
  layout.structure = o.structure;
  return o;
}

/// Validates options against the dataset and resolves defaults taken from the structure.
void resolve(const Config& c, ModularOptions& o, Layout& L) {
  const char* layers_key = o.shared ? "num_slots" : "num_modules";
  if (L.images > 0) {
    if (o.image_arch.empty()) o.image_arch = {L.image_pixels, 128, 64, L.image_bits};
    if (o.image_arch.size() < 2 || o.image_arch.front() != L.image_pixels || o.image_arch.back() != L.image_bits)
      c.fail("image_arch", "expected [pixels per image = " + std::to_string(L.image_pixels) + ", hidden..., bits = " +
                               std::to_string(L.image_bits) + "], got " + list_text(o.image_arch));
  }
  if (o.layers.empty()) {
    o.layers = hidden_layers(L.structure);
    if (o.layers.empty())
      c.fail(layers_key, "not set, and the dataset records no structure to take it from (set it, or `structure`)");
  }
  if (o.module_arch.size() < 2 || o.module_arch.front() != o.topk || o.module_arch.back() != 1)
    c.fail("module_arch", "expected [topk = " + std::to_string(o.topk) + ", hidden..., 1], got " + list_text(o.module_arch));
  std::int64_t width = L.inputs;
  for (std::size_t l = 0; l < o.layers.size(); ++l) {
    if (o.topk > width)
      c.fail("topk", "layer " + std::to_string(l) + " reads " + std::to_string(width) + " inputs, fewer than topk = " +
                         std::to_string(o.topk));
    width = o.layers[l];
  }
  if (L.outputs > width)
    c.fail(layers_key, "the output routing picks " + std::to_string(L.outputs) + " outputs from the last layer's " +
                           std::to_string(width) + " modules");
  if (o.shared && o.num_shared_modules == 0)
    o.num_shared_modules = static_cast<std::int64_t>(o.layers.size());  // one module function per layer

  // The true routing, when the structure is a known Boolean task and the model matches it.
  if (L.structure.empty()) {
    L.no_truth_reason = "the dataset records no structure and the model sets none";
  } else if (!true_routing(L.structure)) {
    L.no_truth_reason = "no known routing for structure " + list_text(L.structure);
  } else if (hidden_layers(L.structure) != o.layers) {
    L.no_truth_reason = std::string(layers_key) + " = " + list_text(o.layers) + " does not match structure " +
                        list_text(L.structure);
  } else if (L.structure.front() != L.inputs || L.structure.back() != L.outputs) {
    L.no_truth_reason = "structure " + list_text(L.structure) + " does not match the dataset's " +
                        std::to_string(L.inputs) + " inputs and " + std::to_string(L.outputs) + " outputs";
  } else if (o.topk < 2) {
    L.no_truth_reason = "topk = " + std::to_string(o.topk) + " cannot read the 2 inputs of the true modules";
  } else if (o.shared && o.num_shared_modules < static_cast<std::int64_t>(o.layers.size())) {
    L.no_truth_reason = "the true routing uses " + std::to_string(o.layers.size()) + " shared modules, num_shared_modules = " +
                        std::to_string(o.num_shared_modules);
  } else if (L.images > 0 && (L.images != 2 || L.image_bits * 2 != L.structure.front())) {
    L.no_truth_reason = "the known routing of image inputs needs 2 images of " + std::to_string(L.structure.front() / 2) +
                        " bits each, the dataset has " + std::to_string(L.images) + " of " + std::to_string(L.image_bits);
  } else {
    for (std::int64_t t = 0; t < L.tasks; ++t) {
      Routing r = *true_routing(L.structure, t);
      // Image pairs (§5.2): the table's input x_{2j} is bit j of image 1 and x_{2j+1} bit j of
      // image 2, which the image modules emit at j and bits + j: [[0,1],[2,3],[4,5]] → [[0,3],[1,4],[2,5]].
      if (L.images > 0)
        for (auto& module : r.layers.front())
          for (auto& i : module) i = (i % 2) * L.image_bits + i / 2;
      L.truth.push_back(std::move(r));
    }
  }
  auto need_truth = [&](bool wanted, const std::string& key) {
    if (wanted && L.truth.empty()) c.fail(key, "needs the true routing, but " + L.no_truth_reason);
  };
  need_truth(o.routing_init == "known", "routing_init");
  need_truth(o.known_module_inputs, "known_module_inputs");
  need_truth(o.known_func_outputs, "known_func_outputs");
  if (o.shared) {
    need_truth(o.location_init == "known", "location_init");
    need_truth(o.known_module_locations, "known_module_locations");
  }
}

/// A routing layer's logits with whether they are learned.
struct RoutingParam {
  torch::Tensor logits;  ///< [T, M, I]
  bool learned = true;
  std::string name;      ///< as registered (the name an override replaces it by)
};

/// What the two modular models share: input routing per hidden layer, the output routing, the
/// parameter groups, the recovery metric and the recorded routing tables. Subclasses supply the
/// modules that turn each layer's routed inputs [B, M·k] into its outputs [B, M].
///
/// The logits can be overridden like any modlab::nn layer's weights ([K, T, …] overrides with K
/// samples folded into the batch), so that a population stacks learned routing over its members;
/// an analyzer does not mask them (unmaskable_parameters).
class RoutedModel : public Model, public modlab::nn::Overridable {
 public:
  /// The routing, output, image and location logits choose which inputs a module reads: a mask
  /// over them would change the routing, not remove a connection. Every module weight is maskable.
  std::map<std::string, std::string> unmaskable_parameters() const override {
    std::map<std::string, std::string> out;
    for (const auto& p : named_parameters(/*recurse=*/false))
      out[p.key()] = "routing logits select inputs; they weigh no connection";
    return out;
  }

  RoutedModel(ModularOptions opt, Layout layout) : opt_(std::move(opt)), layout_(std::move(layout)) {
    const std::int64_t T = layout_.tasks;
    const bool known_init = opt_.routing_init == "known" || opt_.known_module_inputs;
    std::int64_t width = layout_.inputs;
    for (std::size_t l = 0; l < opt_.layers.size(); ++l) {
      const std::int64_t M = opt_.layers[l];
      torch::Tensor r;
      if (known_init) {
        r = torch::zeros({T, M, width});
        auto a = r.accessor<float, 3>();
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t m = 0; m < M; ++m) {
            const auto sel = known_selection(layout_.truth[static_cast<std::size_t>(t)].layers[l][static_cast<std::size_t>(m)],
                                             opt_.topk, width);
            for (std::size_t j = 0; j < sel.size(); ++j)
              a[t][m][sel[j]] = static_cast<float>(known_logit(static_cast<std::int64_t>(j), opt_.topk));
          }
      } else {
        r = torch::randn({T, M, width});
      }
      const bool learned = !opt_.known_module_inputs;
      const auto name = "routing_logits" + std::to_string(l);
      inputs_.push_back({register_parameter(name, r, learned), learned, name});
      layer_names_.push_back("routing.layer" + std::to_string(l));
      width = M;
    }
    torch::Tensor r;
    const std::int64_t n_out = layout_.outputs;
    if (known_init || opt_.known_func_outputs) {
      r = torch::zeros({T, 1, width});
      auto a = r.accessor<float, 3>();
      for (std::int64_t t = 0; t < T; ++t) {
        const auto sel = known_selection(layout_.truth[static_cast<std::size_t>(t)].output, n_out, width);
        for (std::size_t j = 0; j < sel.size(); ++j)
          a[t][0][sel[j]] = static_cast<float>(known_logit(static_cast<std::int64_t>(j), n_out));
      }
    } else {
      r = torch::randn({T, 1, width});
    }
    const bool learned = !(opt_.known_module_inputs || opt_.known_func_outputs);
    output_ = {register_parameter("output_logits", r, learned), learned, "output_logits"};

    if (layout_.images > 0) {  // image modules and their image selection (§5.2)
      const std::int64_t n = layout_.images;
      image_bank_ = register_module("image_modules", ModuleBank(n, opt_.image_arch));
      const bool fixed = opt_.known_image_inputs;
      auto logits = fixed ? torch::eye(n).unsqueeze(0).repeat({T, 1, 1}) : torch::randn({T, n, n});
      image_ = {register_parameter("image_logits", logits, !fixed), !fixed, "image_logits"};
    }
  }

  Output forward(const Batch& batch) override {
    const auto task = task_ids(batch, layout_.tasks);
    const bool train = is_training();
    Output out;
    out.kind = Output::Kind::Logits;
    torch::Tensor h = layout_.images > 0
                          ? image_forward(batch, task, train, out)
                          : batch.inputs.reshape({batch.inputs.size(0), -1}).to(output_.logits.scalar_type());
    for (std::size_t l = 0; l < inputs_.size(); ++l) {
      const Routed r = route_with(h, inputs_[l], task, mode(inputs_[l], opt_.topk, train));
      h = layer_forward(l, r.inputs, task, train, out);
      out.aux[layer_names_[l]] = r.indices;
    }
    const Routed r = route_with(h, output_, task, mode(output_, layout_.outputs, train));
    out.prediction = r.inputs;  // one routing "module" reading `outputs` inputs: [B, outputs]
    out.aux["routing.output"] = r.indices;
    return out;
  }

  std::vector<ParamGroup> param_groups(const std::string&) override {
    ParamGroup modules{"modules", module_parameters(), std::nullopt, std::nullopt};
    if (image_bank_)
      for (auto& t : image_bank_->parameters()) modules.params.push_back(t);
    ParamGroup routing{"routing", {}, std::nullopt, std::nullopt};
    if (opt_.lr_module_input > 0.0) routing.lr = opt_.lr_module_input;
    for (const auto& p : inputs_)
      if (p.learned) routing.params.push_back(p.logits);
    if (output_.learned) routing.params.push_back(output_.logits);
    if (image_.learned && image_.logits.defined()) routing.params.push_back(image_.logits);
    std::vector<ParamGroup> groups = {modules, routing};
    extra_groups(groups);
    return groups;
  }

  void eval_batch(const std::string&, const Batch& batch, const Output&, MetricSet& metrics) override {
    add_zeros_baseline(batch, metrics);
  }

  void eval_end(const std::string&, MetricSet& metrics, Recorder&) override {
    if (layout_.images > 0) metrics.set("images_correct", images_correct() ? 1.0 : 0.0);
    if (layout_.truth.empty()) return;
    refresh_recovery();
    metrics.set("routing_correct", routing_correct_ ? 1.0 : 0.0);
    if (opt_.shared) metrics.set("locations_correct", locations_correct_ ? 1.0 : 0.0);
  }

  void record(Recorder& recorder) override {
    const std::int64_t T = layout_.tasks;
    const auto learned = learned_routing();
    for (std::size_t l = 0; l < inputs_.size(); ++l) {
      const std::int64_t M = opt_.layers[l];
      auto idx = torch::empty({T, M, opt_.topk}, torch::kLong);
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t j = 0; j < opt_.topk; ++j)
            idx[t][m][j] = learned[static_cast<std::size_t>(t)].layers[l][static_cast<std::size_t>(m)][static_cast<std::size_t>(j)];
      recorder.tensor(layer_names_[l], idx, {"task", "module", "rank"});
      recorder.tensor("routing.logits.layer" + std::to_string(l), inputs_[l].logits.detach(), {"task", "module", "input"});
    }
    auto out = torch::empty({T, layout_.outputs}, torch::kLong);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t j = 0; j < layout_.outputs; ++j) out[t][j] = learned[static_cast<std::size_t>(t)].output[static_cast<std::size_t>(j)];
    recorder.tensor("routing.output", out, {"task", "output"});
    recorder.tensor("routing.logits.output", output_.logits.detach().squeeze(1), {"task", "input"});
    if (!layout_.truth.empty()) {
      for (std::size_t l = 0; l < inputs_.size(); ++l) {
        const std::int64_t M = opt_.layers[l];
        auto idx = torch::empty({T, M, 2}, torch::kLong);
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t j = 0; j < 2; ++j)
              idx[t][m][j] = layout_.truth[static_cast<std::size_t>(t)].layers[l][static_cast<std::size_t>(m)][static_cast<std::size_t>(j)];
        recorder.tensor("routing.true.layer" + std::to_string(l), idx, {"task", "module", "rank"});
      }
      auto tout = torch::empty({T, layout_.outputs}, torch::kLong);
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t j = 0; j < layout_.outputs; ++j)
          tout[t][j] = layout_.truth[static_cast<std::size_t>(t)].output[static_cast<std::size_t>(j)];
      recorder.tensor("routing.true.output", tout, {"task", "output"});
      refresh_recovery();
      recorder.tensor("routing.correct", torch::tensor(routing_correct_ ? 1 : 0, torch::kLong));
      if (opt_.shared) recorder.tensor("locations.correct", torch::tensor(locations_correct_ ? 1 : 0, torch::kLong));
    }
    recorder.note("routing_truth", layout_.truth.empty() ? "none: " + layout_.no_truth_reason
                                                         : "structure " + list_text(layout_.structure) +
                                                               (layout_.images > 0 ? " on 2 images" : ""));
    if (layout_.images > 0) {
      recorder.tensor("images.selection", image_selection(), {"task", "image_module"});
      recorder.tensor("images.logits", image_.logits.detach(), {"task", "image_module", "image"});
      recorder.tensor("images.correct", torch::tensor(images_correct() ? 1 : 0, torch::kLong));
    }
    record_extra(recorder);
  }

 protected:
  /// The outputs [B, M] of hidden layer `l` from its routed inputs [B, M·k].
  virtual torch::Tensor layer_forward(std::size_t l, const torch::Tensor& inputs, const torch::Tensor& task, bool train,
                                      Output& out) = 0;
  virtual std::vector<torch::Tensor> module_parameters() = 0;
  virtual void extra_groups(std::vector<ParamGroup>&) {}
  virtual void record_extra(Recorder&) {}
  /// Adds the chosen shared module of every slot to `learned` (shared modules only).
  virtual void learned_locations(std::vector<Routing>&) const {}
  /// Parameters whose in-place updates change the learned routing (cache key of the recovery test).
  virtual void routing_state(std::vector<torch::Tensor>& out) const {
    for (const auto& p : inputs_) out.push_back(p.logits);
    out.push_back(output_.logits);
    if (image_.logits.defined()) out.push_back(image_.logits);
  }

  /// Image inputs [B, images, …] → the image modules' outputs side by side [B, images·bits]. Image
  /// module m reads the image a hard Gumbel-softmax over its selection logits picks (straight-
  /// through, as the shared modules' locations), or image m when the selection is fixed.
  torch::Tensor image_forward(const Batch& batch, const torch::Tensor& task, bool train, Output& out) {
    const std::int64_t B = batch.inputs.size(0), n = layout_.images;
    const auto imgs = batch.inputs.reshape({B, n, layout_.image_pixels}).to(image_.logits.scalar_type());
    torch::Tensor sel = imgs;
    if (image_.learned) {
      const auto f = task_logits(image_, task, B);
      const auto w = locations(f.logits, f.task, B, train ? opt_.image_tau : 1.0, train && opt_.image_noise,
                               /*per_sample=*/false);  // [T, modules, images]
      out.aux["images.selection"] = w;
      sel = w.size(0) == 1 ? torch::matmul(w.squeeze(0), imgs) : torch::bmm(w.index_select(0, f.task), imgs);
    }
    return image_bank_->forward(sel.transpose(0, 1)).permute({1, 0, 2}).reshape({B, n * layout_.image_bits});
  }

  /// The image each image module reads in evaluation, int64 [T, images].
  torch::Tensor image_selection() const {
    torch::NoGradGuard no_grad;
    return image_.logits.detach().to(torch::kCPU).argmax(-1);
  }

  /// Whether every image is read by exactly one image module (for every task).
  bool images_correct() const {
    const auto sel = image_selection();
    const auto a = sel.accessor<std::int64_t, 2>();
    for (std::int64_t t = 0; t < sel.size(0); ++t) {
      std::vector<bool> seen(static_cast<std::size_t>(layout_.images), false);
      for (std::int64_t m = 0; m < sel.size(1); ++m) seen[static_cast<std::size_t>(a[t][m])] = true;
      if (std::find(seen.begin(), seen.end(), false) != seen.end()) return false;
    }
    return true;
  }

  /// With image modules the meaning of an image module's outputs is learned, so the layer-0 routing
  /// is compared up to a relabelling of each image module's bits (and the images must be read by
  /// different modules; which module reads which image does not matter, the XORs being symmetric).
  bool recovers_with_images(std::vector<Routing> learned, const RecoveryCheck& check) const {
    if (!images_correct()) return false;
    const std::int64_t bits = layout_.image_bits;
    std::vector<std::int64_t> p0(static_cast<std::size_t>(bits)), p1;
    std::iota(p0.begin(), p0.end(), 0);
    const auto original = learned;
    do {
      p1 = std::vector<std::int64_t>(p0.size());
      std::iota(p1.begin(), p1.end(), 0);
      do {
        for (std::size_t t = 0; t < learned.size(); ++t)
          for (std::size_t m = 0; m < learned[t].layers.front().size(); ++m)
            for (std::size_t j = 0; j < learned[t].layers.front()[m].size(); ++j) {
              const std::int64_t i = original[t].layers.front()[m][j];
              learned[t].layers.front()[m][j] = i < bits ? p0[static_cast<std::size_t>(i)]
                                                         : bits + p1[static_cast<std::size_t>(i - bits)];
            }
        if (recovers(learned, layout_.truth, check)) return true;
      } while (std::next_permutation(p1.begin(), p1.end()));
    } while (std::next_permutation(p0.begin(), p0.end()));
    return false;
  }

  /// `p`'s logits as this forward sees them (an override, with K samples as K·T tasks) and the
  /// task of each of the `rows` rows among them.
  TaskLogits task_logits(const RoutingParam& p, const torch::Tensor& task, std::int64_t rows) const {
    return fold_samples_into_tasks(effective(p.name, p.logits), 3, task, rows);
  }

  Routed route_with(const torch::Tensor& x, const RoutingParam& p, const torch::Tensor& task, const RouteMode& m) const {
    const auto f = task_logits(p, task, x.size(0));
    return route(x, f.logits, f.task, m);
  }

  RouteMode mode(const RoutingParam& p, std::int64_t k, bool train) const {
    RouteMode m;
    m.k = k;
    m.tau = train ? opt_.tau : 1.0;  // eval: τ = None
    m.member_tau = train;
    m.noise = train && opt_.use_gumbel && p.learned;
    m.per_sample = train && opt_.per_sample_routing && p.learned;
    return m;
  }

  /// The deterministic (eval) routing of every task.
  std::vector<Routing> learned_routing() const {
    torch::NoGradGuard no_grad;
    std::vector<Routing> out(static_cast<std::size_t>(layout_.tasks));
    auto top = [](const torch::Tensor& logits, std::int64_t k) {
      return std::get<1>(logits.detach().to(torch::kCPU).topk(k, -1, true, true)).contiguous();  // [T, M, k]
    };
    for (std::size_t l = 0; l < inputs_.size(); ++l) {
      const auto idx = top(inputs_[l].logits, opt_.topk);
      const auto a = idx.accessor<std::int64_t, 3>();
      for (std::int64_t t = 0; t < layout_.tasks; ++t) {
        std::vector<Indices> layer(static_cast<std::size_t>(idx.size(1)));
        for (std::int64_t m = 0; m < idx.size(1); ++m)
          for (std::int64_t j = 0; j < idx.size(2); ++j) layer[static_cast<std::size_t>(m)].push_back(a[t][m][j]);
        out[static_cast<std::size_t>(t)].layers.push_back(std::move(layer));
      }
    }
    const auto idx = top(output_.logits, layout_.outputs);
    const auto a = idx.accessor<std::int64_t, 3>();
    for (std::int64_t t = 0; t < layout_.tasks; ++t)
      for (std::int64_t j = 0; j < idx.size(2); ++j) out[static_cast<std::size_t>(t)].output.push_back(a[t][0][j]);
    learned_locations(out);
    return out;
  }

  /// Recomputes whether the learned routing recovers the truth, unless no routing parameter changed.
  void refresh_recovery() {
    std::vector<torch::Tensor> state;
    routing_state(state);
    std::vector<std::int64_t> versions;
    for (const auto& t : state) versions.push_back(static_cast<std::int64_t>(t._version()));
    if (versions == cached_versions_) return;
    const auto learned = learned_routing();
    const RecoveryCheck all{true, true, opt_.shared};
    routing_correct_ = layout_.images > 0 ? recovers_with_images(learned, all) : recovers(learned, layout_.truth, all);
    if (opt_.shared) locations_correct_ = recovers(learned, layout_.truth, RecoveryCheck{false, false, true});
    cached_versions_ = versions;
  }

  ModularOptions opt_;
  Layout layout_;
  std::vector<RoutingParam> inputs_;
  RoutingParam output_;
  std::vector<std::string> layer_names_;
  std::vector<std::int64_t> cached_versions_;
  bool routing_correct_ = false, locations_correct_ = false;
  ModuleBank image_bank_{nullptr};
  RoutingParam image_;  ///< image selection logits [T, image modules, images]; undefined without images
};

/// hierarchically_modular: M_ℓ module MLPs per hidden layer, one bank (stacked weights) per layer.
class HierModularModel : public RoutedModel {
 public:
  HierModularModel(ModularOptions opt, Layout layout) : RoutedModel(std::move(opt), std::move(layout)) {
    for (std::size_t l = 0; l < opt_.layers.size(); ++l)
      banks_.push_back(register_module("modules" + std::to_string(l), ModuleBank(opt_.layers[l], opt_.module_arch)));
  }

 protected:
  torch::Tensor layer_forward(std::size_t l, const torch::Tensor& inputs, const torch::Tensor&, bool, Output&) override {
    return banks_[l]->forward_blocks(inputs);
  }
  std::vector<torch::Tensor> module_parameters() override {
    std::vector<torch::Tensor> p;
    for (auto& b : banks_)
      for (auto& t : b->parameters()) p.push_back(t);
    return p;
  }

 private:
  std::vector<ModuleBank> banks_;
};

/// hierarchically_modular_shared_modules: one pool of S module MLPs; each slot of each layer has
/// input routing and location logits L_ℓ [T, slots, S] choosing (hard Gumbel-softmax) which shared
/// module fills it. All S modules run on every slot input in one batched chain; the one-hot picks.
class SharedModulesModel : public RoutedModel {
 public:
  SharedModulesModel(ModularOptions opt, Layout layout) : RoutedModel(std::move(opt), std::move(layout)) {
    const std::int64_t S = opt_.num_shared_modules, T = layout_.tasks;
    bank_ = register_module("modules", ModuleBank(S, opt_.module_arch));
    const bool known_init = opt_.location_init == "known" || opt_.known_module_locations;
    for (std::size_t l = 0; l < opt_.layers.size(); ++l) {
      const std::int64_t slots = opt_.layers[l];
      torch::Tensor r;
      if (known_init) {
        r = torch::zeros({T, slots, S});
        auto a = r.accessor<float, 3>();
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t s = 0; s < slots; ++s)
            a[t][s][layout_.truth[static_cast<std::size_t>(t)].locations[l][static_cast<std::size_t>(s)]] = 1.0f;
      } else {
        r = torch::randn({T, slots, S});
      }
      const bool learned = !opt_.known_module_locations;
      const auto name = "location_logits" + std::to_string(l);
      locations_.push_back({register_parameter(name, r, learned), learned, name});
      location_names_.push_back("locations.layer" + std::to_string(l));
    }
  }

 protected:
  torch::Tensor layer_forward(std::size_t l, const torch::Tensor& inputs, const torch::Tensor& task, bool train,
                              Output& out) override {
    const std::int64_t S = opt_.num_shared_modules, slots = opt_.layers[l], B = inputs.size(0);
    // every shared module on every slot input: [B·slots, k] → [B·slots, S]
    const auto y = bank_->forward_shared(inputs.reshape({B * slots, opt_.topk})).view({B, slots, S});
    const auto& p = locations_[l];
    const bool per_sample = train && opt_.per_sample_routing && p.learned;
    const double tau = opt_.location_tau > 0.0 ? opt_.location_tau : opt_.tau;
    const bool noise = train && p.learned && (opt_.use_gumbel || opt_.location_noise);
    const auto f = task_logits(p, task, B);
    const bool member_tau = train && opt_.location_tau <= 0.0;  // the routing τ, each member's own
    const auto w = locations(f.logits, f.task, B, train ? tau : 1.0, noise, per_sample, member_tau);  // [N, slots, S]
    out.aux[location_names_[l]] = w;
    return combine_locations(y, w, f.task, per_sample);
  }

  std::vector<torch::Tensor> module_parameters() override { return bank_->parameters(); }

  void extra_groups(std::vector<ParamGroup>& groups) override {
    ParamGroup g{"locations", {}, std::nullopt, std::nullopt};
    if (opt_.lr_module_location > 0.0) g.lr = opt_.lr_module_location;
    for (const auto& p : locations_)
      if (p.learned) g.params.push_back(p.logits);
    groups.push_back(g);
  }

  void learned_locations(std::vector<Routing>& out) const override {
    for (const auto& p : locations_) {
      const auto idx = p.logits.detach().to(torch::kCPU).argmax(-1).contiguous();  // [T, slots]
      const auto a = idx.accessor<std::int64_t, 2>();
      for (std::int64_t t = 0; t < idx.size(0); ++t) {
        Indices slots;
        for (std::int64_t s = 0; s < idx.size(1); ++s) slots.push_back(a[t][s]);
        out[static_cast<std::size_t>(t)].locations.push_back(std::move(slots));
      }
    }
  }

  void routing_state(std::vector<torch::Tensor>& out) const override {
    RoutedModel::routing_state(out);
    for (const auto& p : locations_) out.push_back(p.logits);
  }

  void record_extra(Recorder& recorder) override {
    torch::NoGradGuard no_grad;
    for (std::size_t l = 0; l < locations_.size(); ++l) {
      recorder.tensor(location_names_[l], locations_[l].logits.argmax(-1), {"task", "slot"});
      recorder.tensor("locations.logits.layer" + std::to_string(l), locations_[l].logits.detach(), {"task", "slot", "module"});
      if (!layout_.truth.empty()) {
        const std::int64_t T = layout_.tasks, slots = opt_.layers[l];
        auto idx = torch::empty({T, slots}, torch::kLong);
        for (std::int64_t t = 0; t < T; ++t)
          for (std::int64_t s = 0; s < slots; ++s)
            idx[t][s] = layout_.truth[static_cast<std::size_t>(t)].locations[l][static_cast<std::size_t>(s)];
        recorder.tensor("locations.true.layer" + std::to_string(l), idx, {"task", "slot"});
      }
    }
  }

 private:
  ModuleBank bank_{nullptr};
  std::vector<RoutingParam> locations_;
  std::vector<std::string> location_names_;
};

template <bool Shared>
constexpr const char* modular_name() {
  return Shared ? "hierarchically_modular_shared_modules" : "hierarchically_modular";
}

template <bool Shared>
void check_modular(const Config&, const DatasetSpec& spec) {
  check_dataset(spec, modular_name<Shared>());
}

template <bool Shared>
std::shared_ptr<Model> make_modular(const Config& c, const DatasetSpec& spec, Host&) {
  const char* name = modular_name<Shared>();
  check_dataset(spec, name);
  Layout layout;
  layout.inputs = spec.input_numel();
  layout.outputs = spec.num_outputs;
  layout.tasks = task_count(spec);
  auto images = spec.info.find("images"), bits = spec.info.find("image_bits");
  if (images != spec.info.end() && bits != spec.info.end()) {
    const auto n = parse_structure(images->second), b = parse_structure(bits->second);
    if (n.size() != 1 || b.size() != 1 || n[0] < 1 || b[0] < 1 || layout.inputs % n[0] != 0)
      throw ConfigError(std::string(name) + ": dataset '" + spec.name + "' records images = '" + images->second +
                        "' and image_bits = '" + bits->second + "', which do not describe its " +
                        std::to_string(layout.inputs) + " input values");
    layout.images = n[0];
    layout.image_bits = b[0];
    layout.image_pixels = layout.inputs / n[0];
    layout.inputs = n[0] * b[0];
  }
  ModularOptions o = read_modular(c, Shared, layout);
  if (layout.structure.empty()) {
    auto it = spec.info.find("structure");
    if (it != spec.info.end()) layout.structure = parse_structure(it->second);
  }
  resolve(c, o, layout);
  if (Shared) return std::make_shared<SharedModulesModel>(std::move(o), std::move(layout));
  return std::make_shared<HierModularModel>(std::move(o), std::move(layout));
}

// ---------------------------------------------------------------------------------- registration

void register_hier_modular(Registrar& registrar) {
  ModelEntry mlp;
  mlp.name = "mlp";
  mlp.description = "MLP with ReLU hidden layers and logits out (any classification or multi-label data), optional fixed random pruning";
  mlp.keys = mlp_options().specs();
  mlp.factory = &make_mlp;
  mlp.check = &check_mlp;
  mlp.variants = {"pruning_ratio = 50.0"};
  registrar.add_model(std::move(mlp));

  ModelEntry hm;
  hm.name = "hierarchically_modular";
  hm.description = "layers of module MLPs, each reading top-k inputs picked by learned routing logits";
  hm.keys = modular_options(false).specs();
  hm.factory = &make_modular<false>;
  hm.check = &check_modular<false>;
  registrar.add_model(std::move(hm));

  ModelEntry sm;
  sm.name = "hierarchically_modular_shared_modules";
  sm.description = "slots with learned input routing, filled from a pool of shared module MLPs by learned locations";
  sm.keys = modular_options(true).specs();
  sm.factory = &make_modular<true>;
  sm.check = &check_modular<true>;
  registrar.add_model(std::move(sm));
}

}  // namespace
}  // namespace modlab::hier_modular

MODLAB_PLUGIN("hier_modular", modlab::kModelPlugin, "1.0.0", "MLP and hierarchically modular networks (Boolean tasks)",
              modlab::hier_modular::register_hier_modular)
