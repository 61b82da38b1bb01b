#pragma once
// The latent router of the graph of experts (goe §2.3): a VQ-VAE (after MishaLaskin/vqvae) whose
// quantised latent codes are clustered by k-means; each cluster owns one leaf of the tree.

#include <modlab/nn/layers.hpp>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>

namespace modlab::goe {

struct VqSettings {
  std::int64_t hidden = 32, res_hidden = 32, res_layers = 2, codes = 128, code_dim = 4;
  double beta = 0.25;
};

/// `layers` times the same residual layer x + Conv1×1(ReLU(Conv3×3(ReLU(x)))) (bias-free, weights
/// shared across the repeats, as the reference repeats one layer object), then a ReLU.
class ResStackImpl : public torch::nn::Module {
 public:
  ResStackImpl(std::int64_t channels, std::int64_t res_channels, std::int64_t layers);
  torch::Tensor forward(torch::Tensor x);
  modlab::nn::Conv2d conv3{nullptr}, conv1{nullptr};
  std::int64_t layers;
};
TORCH_MODULE(ResStack);

/// What the quantiser returns for latents z [rows, D, h, w].
struct Quantized {
  torch::Tensor z;             ///< the encoder's output
  torch::Tensor z_q;           ///< z + sg(e − z): the codes e in the forward, gradients to z
  torch::Tensor codes;         ///< [rows, h·w] index of each position's code
  torch::Tensor loss;          ///< mean((sg(e) − z)²) + β·mean((e − sg(z))²)
  torch::Tensor perplexity;    ///< exp of the entropy of the mean code usage over all positions
};

/// Encoder (maskable modlab::nn layers: Conv(C→h/2, k4 s2 p1) ReLU → Conv(h/2→h, k4 s2 p1) ReLU →
/// Conv(h→h, k3 s1 p1) → ResStack → Conv1×1(h→code_dim)), codebook (an Embedding of `codes` vectors,
/// uniform ±1/codes) and decoder (ConvT(code_dim→h, k3 s1 p1) → ResStack → ConvT(h→h/2, k4 s2 p1)
/// ReLU → ConvT(h/2→C, k4 s2 p1)). Images of side 4·m give an m×m latent grid.
class VqVaeImpl : public torch::nn::Module {
 public:
  VqVaeImpl(std::int64_t channels, const VqSettings& s);
  torch::Tensor encode(const torch::Tensor& x);
  Quantized quantize(const torch::Tensor& z);
  torch::Tensor decode(const torch::Tensor& z_q);
  /// The embedding the clustering reads: the quantised latents z_q flattened per row, [rows, D·h·w].
  torch::Tensor embed(const torch::Tensor& x);

  modlab::nn::Conv2d enc1{nullptr}, enc2{nullptr}, enc3{nullptr}, pre_quant{nullptr};
  ResStack enc_res{nullptr}, dec_res{nullptr};
  modlab::nn::Embedding codebook{nullptr};
  torch::nn::ConvTranspose2d dec1{nullptr}, dec2{nullptr}, dec3{nullptr};
  VqSettings settings;
};
TORCH_MODULE(VqVae);

/// The whole latent router: the VQ-VAE, the k-means centres of the training embeddings and the
/// leaf of each cluster (buffers, so checkpoints and the shared router file carry them), plus
/// what its training cost.
class LatentRouterImpl : public torch::nn::Module {
 public:
  LatentRouterImpl(std::int64_t channels, const VqSettings& s, std::int64_t leaves, std::int64_t embedding_dim);
  /// Leaf of each row [rows] (nearest centre, then its leaf).
  torch::Tensor route(const torch::Tensor& x);
  bool fitted() const { return fitted_.item<bool>(); }
  /// Stores the clustering: centres [leaves, dim] and the leaf of each.
  void set_clusters(const torch::Tensor& centres, const torch::Tensor& leaf_of_cluster);

  VqVae vqvae{nullptr};
  torch::Tensor centres, leaf_of_cluster;
  /// Training cost: VQ-VAE optimizer seconds and updates, k-means seconds; `reused` is true when
  /// this run loaded the router another run trained.
  torch::Tensor train_seconds, train_updates, kmeans_seconds, reused;

 private:
  torch::Tensor fitted_;
};
TORCH_MODULE(LatentRouter);

}  // namespace modlab::goe
