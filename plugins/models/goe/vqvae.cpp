#include "vqvae.hpp"

#include "clustering.hpp"

#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

namespace modlab::goe {

ResStackImpl::ResStackImpl(std::int64_t channels, std::int64_t res_channels, std::int64_t layers_)
    : layers(layers_) {
  conv3 = register_module("conv3", modlab::nn::Conv2d(channels, res_channels, 3, 1, 1, /*bias=*/false));
  conv1 = register_module("conv1", modlab::nn::Conv2d(res_channels, channels, 1, 1, 0, /*bias=*/false));
}

torch::Tensor ResStackImpl::forward(torch::Tensor x) {
  for (std::int64_t i = 0; i < layers; ++i) x = x + conv1->forward(torch::relu(conv3->forward(torch::relu(x))));
  return torch::relu(x);
}

VqVaeImpl::VqVaeImpl(std::int64_t channels, const VqSettings& s) : settings(s) {
  namespace tnn = torch::nn;
  const auto h = s.hidden;
  enc1 = register_module("enc1", modlab::nn::Conv2d(channels, h / 2, 4, 2, 1));
  enc2 = register_module("enc2", modlab::nn::Conv2d(h / 2, h, 4, 2, 1));
  enc3 = register_module("enc3", modlab::nn::Conv2d(h, h, 3, 1, 1));
  enc_res = register_module("enc_res", ResStack(h, s.res_hidden, s.res_layers));
  pre_quant = register_module("pre_quant", modlab::nn::Conv2d(h, s.code_dim, 1, 1, 0));
  codebook = register_module("codebook", modlab::nn::Embedding(s.codes, s.code_dim));
  {
    torch::NoGradGuard ng;
    codebook->weight.uniform_(-1.0 / static_cast<double>(s.codes), 1.0 / static_cast<double>(s.codes));
  }
  dec1 = register_module("dec1", tnn::ConvTranspose2d(tnn::ConvTranspose2dOptions(s.code_dim, h, 3).stride(1).padding(1)));
  dec_res = register_module("dec_res", ResStack(h, s.res_hidden, s.res_layers));
  dec2 = register_module("dec2", tnn::ConvTranspose2d(tnn::ConvTranspose2dOptions(h, h / 2, 4).stride(2).padding(1)));
  dec3 = register_module("dec3", tnn::ConvTranspose2d(tnn::ConvTranspose2dOptions(h / 2, channels, 4).stride(2).padding(1)));
}

torch::Tensor VqVaeImpl::encode(const torch::Tensor& x) {
  auto h = torch::relu(enc1->forward(x));
  h = torch::relu(enc2->forward(h));
  return pre_quant->forward(enc_res->forward(enc3->forward(h)));
}

Quantized VqVaeImpl::quantize(const torch::Tensor& z) {
  const auto samples = modlab::nn::folded_samples();
  const auto d = z.size(1);
  // [K, positions, D] against the K codebooks [K, codes, D] (the codebook's override samples, read
  // through the layer so that a mask reaches them).
  const auto flat = z.permute({0, 2, 3, 1}).reshape({samples, -1, d});
  const auto book = codebook->forward(torch::arange(settings.codes, z.options().dtype(torch::kLong)).repeat({samples}))
                        .view({samples, settings.codes, d});
  const auto dist = (flat.pow(2).sum(2, true) + book.pow(2).sum(2).unsqueeze(1)) - 2.0 * torch::bmm(flat, book.transpose(1, 2));
  modlab::nn::MacCounter::add(flat.size(0) * flat.size(1) * settings.codes * d);
  const auto idx = dist.argmin(2);  // [K, positions]
  const auto e = torch::gather(book, 1, idx.unsqueeze(2).expand({samples, idx.size(1), d}))
                     .view({z.size(0), z.size(2), z.size(3), d})
                     .permute({0, 3, 1, 2});
  Quantized q;
  q.z = z;
  q.loss = (e.detach() - z).pow(2).mean() + settings.beta * (e - z.detach()).pow(2).mean();
  q.z_q = z + (e - z).detach();
  q.codes = idx.reshape({z.size(0), -1});
  const auto usage = torch::one_hot(idx.reshape({-1}), settings.codes).to(z.dtype()).mean(0);
  q.perplexity = torch::exp(-(usage * torch::log(usage + 1e-10)).sum());
  return q;
}

torch::Tensor VqVaeImpl::decode(const torch::Tensor& z_q) {
  auto h = dec_res->forward(dec1->forward(z_q));
  return dec3->forward(torch::relu(dec2->forward(h)));
}

torch::Tensor VqVaeImpl::embed(const torch::Tensor& x) { return quantize(encode(x)).z_q.flatten(1); }

LatentRouterImpl::LatentRouterImpl(std::int64_t channels, const VqSettings& s, std::int64_t leaves,
                                   std::int64_t embedding_dim) {
  vqvae = register_module("vqvae", VqVae(channels, s));
  centres = register_buffer("centres", torch::zeros({leaves, embedding_dim}));
  leaf_of_cluster = register_buffer("leaf_of_cluster", torch::arange(leaves, torch::kLong));
  fitted_ = register_buffer("fitted", torch::zeros({}, torch::kBool));
  train_seconds = register_buffer("train_seconds", torch::zeros({}, torch::kDouble));
  train_updates = register_buffer("train_updates", torch::zeros({}, torch::kLong));
  kmeans_seconds = register_buffer("kmeans_seconds", torch::zeros({}, torch::kDouble));
  reused = register_buffer("reused", torch::zeros({}, torch::kBool));
}

torch::Tensor LatentRouterImpl::route(const torch::Tensor& x) {
  const auto emb = vqvae->embed(x);
  modlab::nn::MacCounter::add(emb.size(0) * centres.size(0) * centres.size(1));
  return leaf_of_cluster.index_select(0, nearest(emb, centres));
}

void LatentRouterImpl::set_clusters(const torch::Tensor& c, const torch::Tensor& leaf) {
  torch::NoGradGuard ng;
  centres.copy_(c);
  leaf_of_cluster.copy_(leaf);
  fitted_.fill_(true);
}

}  // namespace modlab::goe
