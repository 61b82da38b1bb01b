#pragma once
/// @file mixture/networks.hpp
/// The network factory of gated mixtures: experts and gates by kind, as the `expert` and `gate`
/// keys of the moe and mode plugins name them, with the input each kind reads.

#include <modlab/dataset.hpp>
#include <modlab/mixture/experts.hpp>
#include <modlab/mixture/gates.hpp>

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab::mixture {

/// Network kinds: "linear" (no hidden layer), "mlp" (hidden layers), "mnist_cnn", "fmnist_cnn"
/// (one 3×3 conv block, then the hidden layers; the Fashion-MNIST gate has 8 channels and
/// BatchNorm), "cifar_cnn" (four conv blocks, moe §1.6).
const std::vector<std::string>& network_kinds();
/// True for the kinds that read images [B, C, H, W].
bool is_image_network(const std::string& kind);

/// The dataset's input as an image shape [C, H, W] ([H, W] gains a channel axis; other shapes stay).
std::vector<std::int64_t> image_shape(const DatasetSpec& spec);

/// Throws a ConfigError naming `model` and `which` ("expert", "gate") unless network `kind` can
/// read inputs of `shape` (images of at least 4×4 pixels, 16×16 for "cifar_cnn").
void check_network_input(const std::string& model, const std::string& which, const std::string& kind,
                         const std::vector<std::int64_t>& shape);

/// E experts of `kind` with `hidden` widths for a dataset of `spec` (classes = its outputs);
/// `dropout` after each hidden layer of MLP experts.
std::shared_ptr<ExpertBank> make_experts(const std::string& model, const std::string& kind, std::int64_t members,
                                         const std::vector<std::int64_t>& hidden, const DatasetSpec& spec,
                                         double dropout = 0.0);
/// A gate of `kind` over `experts` experts with `hidden` widths.
std::shared_ptr<Gate> make_gate(const std::string& model, const std::string& kind, const std::vector<std::int64_t>& hidden,
                                std::int64_t experts, const DatasetSpec& spec);

/// About how many parameters `members` experts of `expert` and a gate of `gate` over them have,
/// counted on banks and gates of one and two members (both grow linearly with the count), so that
/// a size can be checked (modlab::check_model_size) before the model is built.
double mixture_parameters(const std::string& model, const std::string& expert, const std::vector<std::int64_t>& expert_hidden,
                          const std::string& gate, const std::vector<std::int64_t>& gate_hidden, std::int64_t members,
                          const DatasetSpec& spec);

/// A batch's inputs as network `kind` reads them: images [B, C, H, W] of `shape`, or float rows.
torch::Tensor network_input(const std::string& kind, const torch::Tensor& inputs, const std::vector<std::int64_t>& shape);

}  // namespace modlab::mixture
