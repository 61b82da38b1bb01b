#pragma once
// The graph of experts' network (goe §2.1–§2.2): a tree of modules organised by depth, each depth
// one stack of modlab::nn layers with one member per node, and the reference chains.

#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace modlab::goe {

/// Shapes of one root-to-leaf chain: D − 1 convolution levels (3×3, padding 1, then 2×2 max pool
/// and ReLU), then a last level flatten → hidden → ReLU → classes.
struct StackShape {
  std::int64_t in_channels = 1, side = 28;  ///< square input [C, side, side]
  std::vector<std::int64_t> channels;      ///< output channels of each convolution level
  std::int64_t hidden = 0, classes = 0;
  /// Number of levels D (convolution levels + the last level).
  std::int64_t depth() const { return static_cast<std::int64_t>(channels.size()) + 1; }
  /// Side of the feature map the last level flattens.
  std::int64_t final_side() const;
};

/// The §2.2 stack for width factor `p` and `depth` levels: convolution level i has p·2^i channels
/// and the hidden layer twice the last level's channels (Rotated MNIST, 3 levels: p, 2p, FC 4p;
/// CelebA, 4 levels: p, 2p, 4p, FC 8p). `wide` doubles every width after the first level (the
/// `ref_sqA` chain: p, 4p, FC 8p). Throws std::invalid_argument when the input is too small for
/// the depth's pooling.
StackShape stack_shape(std::int64_t in_channels, std::int64_t side, std::int64_t depth, std::int64_t p,
                       std::int64_t classes, bool wide);

/// A tree of modules with `branching` children per node (2: the GoE, 1: a chain). Level d holds
/// branching^d nodes as one stacked layer: `conv<d>` (StackedConv2d), the last level `fc_hidden`
/// and `fc_out` (StackedLinear). Each sample runs the nodes on its path only: its leaf's ancestors,
/// one node per level.
class ModuleTreeImpl : public torch::nn::Module {
 public:
  ModuleTreeImpl(const StackShape& shape, std::int64_t branching);
  /// x [rows, C, side, side] and each row's leaf [rows] (int64 in [0, leaves())) → logits
  /// [rows, classes] in batch order. Rows are sorted by (override sample, leaf) once, so every node
  /// reads one contiguous block of rows; nodes without rows cost nothing. With K override samples
  /// folded into the batch, each of the K blocks runs on its own sample's weights.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& leaf);
  std::int64_t depth() const { return shape_.depth(); }
  std::int64_t leaves() const { return leaves_; }
  std::int64_t branching() const { return branching_; }
  const StackShape& shape() const { return shape_; }
  /// Number of rows per node of each level for rows already sorted by `key` = sample·leaves + leaf:
  /// level d has K·branching^d counts.
  std::vector<std::vector<std::int64_t>> level_counts(const torch::Tensor& sorted_key, std::int64_t samples) const;

  std::vector<modlab::nn::StackedConv2d> convs;
  modlab::nn::StackedLinear fc_hidden{nullptr}, fc_out{nullptr};

 private:
  StackShape shape_;
  std::int64_t branching_, leaves_;
};
TORCH_MODULE(ModuleTree);

/// Leaf paths as text, root bit first ("00", "01", …) for `leaves` = 2^bits leaves.
std::vector<std::string> leaf_paths(std::int64_t leaves);

}  // namespace modlab::goe
