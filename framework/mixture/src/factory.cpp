// The network factory of gated mixtures (mixture/networks.hpp).
#include <modlab/errors.hpp>
#include <modlab/mixture/networks.hpp>

#include <torch/torch.h>

namespace modlab::mixture {

namespace {
// CIFAR-100 (moe §1.6): 4 conv blocks, BatchNorm on blocks 2 and 4, then the hidden layers.
const std::vector<std::int64_t> kCifarExpertChannels = {16, 32, 64, 128};
const std::vector<std::int64_t> kCifarGateChannels = {64, 128, 256, 512};
const std::vector<bool> kCifarBatchNorm = {false, true, false, true};
}  // namespace

const std::vector<std::string>& network_kinds() {
  static const std::vector<std::string> kinds = {"linear", "mlp", "mnist_cnn", "fmnist_cnn", "cifar_cnn"};
  return kinds;
}

bool is_image_network(const std::string& kind) {
  return kind == "mnist_cnn" || kind == "fmnist_cnn" || kind == "cifar_cnn";
}

std::vector<std::int64_t> image_shape(const DatasetSpec& spec) {
  auto shape = spec.input_shape;
  if (shape.size() == 2) shape.insert(shape.begin(), 1);
  return shape;
}

void check_network_input(const std::string& model, const std::string& which, const std::string& kind,
                         const std::vector<std::int64_t>& shape) {
  if (!is_image_network(kind)) return;
  if (shape.size() != 3)
    throw ConfigError("model '" + model + "': " + which + " = \"" + kind + "\" needs image inputs [C, H, W] or [H, W]");
  const std::int64_t min_side = kind == "cifar_cnn" ? 16 : 4;  // 4 max-pooled blocks / one 3×3 conv + pool
  if (shape[1] < min_side || shape[2] < min_side)
    throw ConfigError("model '" + model + "': " + which + " = \"" + kind + "\" needs images of at least " +
                      std::to_string(min_side) + "x" + std::to_string(min_side) + " pixels");
}

std::shared_ptr<ExpertBank> make_experts(const std::string& model, const std::string& kind, std::int64_t members,
                                         const std::vector<std::int64_t>& hidden, const DatasetSpec& spec,
                                         double dropout) {
  const auto shape = image_shape(spec);
  check_network_input(model, "expert", kind, shape);
  if (kind == "cifar_cnn")
    return std::make_shared<ConvStackExpertBank>(members, shape, kCifarExpertChannels, kCifarBatchNorm, hidden,
                                                 spec.num_classes);
  if (is_image_network(kind)) return std::make_shared<ConvExpertBank>(members, shape, 1, hidden, spec.num_classes);
  return std::make_shared<MlpExpertBank>(members, spec.input_numel(), hidden, spec.num_classes, dropout);
}

std::shared_ptr<Gate> make_gate(const std::string& model, const std::string& kind, const std::vector<std::int64_t>& hidden,
                                std::int64_t experts, const DatasetSpec& spec) {
  const auto shape = image_shape(spec);
  check_network_input(model, "gate", kind, shape);
  if (kind == "cifar_cnn")
    return std::make_shared<ConvStackGate>(shape, kCifarGateChannels, kCifarBatchNorm, hidden, experts);
  if (is_image_network(kind)) {
    const bool fashion = kind == "fmnist_cnn";
    return std::make_shared<ConvGate>(shape, fashion ? 8 : 1, fashion, hidden, experts);
  }
  return std::make_shared<MlpGate>(spec.input_numel(), hidden, experts);
}

torch::Tensor network_input(const std::string& kind, const torch::Tensor& inputs, const std::vector<std::int64_t>& shape) {
  if (!is_image_network(kind)) return flat_inputs(inputs);
  std::vector<std::int64_t> sizes{inputs.size(0)};
  sizes.insert(sizes.end(), shape.begin(), shape.end());
  return inputs.reshape(sizes).to(torch::kFloat);
}

namespace {
double count(const torch::nn::Module& m) {
  double n = 0;
  for (const auto& p : m.parameters()) n += static_cast<double>(p.numel());
  return n;
}
}  // namespace

double mixture_parameters(const std::string& model, const std::string& expert, const std::vector<std::int64_t>& expert_hidden,
                          const std::string& gate, const std::vector<std::int64_t>& gate_hidden, std::int64_t members,
                          const DatasetSpec& spec) {
  const double e1 = count(*make_experts(model, expert, 1, expert_hidden, spec));
  const double e2 = count(*make_experts(model, expert, 2, expert_hidden, spec));
  const double g1 = count(*make_gate(model, gate, gate_hidden, 1, spec));
  const double g2 = count(*make_gate(model, gate, gate_hidden, 2, spec));
  const double m = static_cast<double>(members);
  return e1 + (m - 1) * (e2 - e1) + g1 + (m - 1) * (g2 - g1);
}

}  // namespace modlab::mixture
