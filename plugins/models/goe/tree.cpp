#include "tree.hpp"

#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace modlab::goe {

std::int64_t StackShape::final_side() const {
  std::int64_t s = side;
  for (std::size_t i = 0; i < channels.size(); ++i) s /= 2;
  return s;
}

StackShape stack_shape(std::int64_t in_channels, std::int64_t side, std::int64_t depth, std::int64_t p,
                       std::int64_t classes, bool wide) {
  if (depth < 2) throw std::invalid_argument("a stack needs at least 2 levels, got " + std::to_string(depth));
  StackShape s;
  s.in_channels = in_channels;
  s.side = side;
  s.classes = classes;
  for (std::int64_t i = 0; i + 1 < depth; ++i) s.channels.push_back(p * (std::int64_t{1} << i) * (wide && i > 0 ? 2 : 1));
  s.hidden = 2 * s.channels.back();
  if (s.final_side() < 1)
    throw std::invalid_argument(std::to_string(depth) + " levels pool the input " + std::to_string(depth - 1) +
                                " times, but its " + std::to_string(side) + "×" + std::to_string(side) +
                                " images shrink to nothing");
  return s;
}

ModuleTreeImpl::ModuleTreeImpl(const StackShape& shape, std::int64_t branching)
    : shape_(shape), branching_(branching), leaves_(1) {
  std::int64_t nodes = 1, in = shape.in_channels;
  for (std::size_t d = 0; d < shape.channels.size(); ++d) {
    convs.push_back(register_module("conv" + std::to_string(d),
                                    modlab::nn::StackedConv2d(nodes, in, shape.channels[d], 3, 1, 1)));
    in = shape.channels[d];
    nodes *= branching;
  }
  leaves_ = nodes;
  const std::int64_t flat = in * shape.final_side() * shape.final_side();
  fc_hidden = register_module("fc_hidden", modlab::nn::StackedLinear(nodes, flat, shape.hidden));
  fc_out = register_module("fc_out", modlab::nn::StackedLinear(nodes, shape.hidden, shape.classes));
}

std::vector<std::vector<std::int64_t>> ModuleTreeImpl::level_counts(const torch::Tensor& sorted_key,
                                                                    std::int64_t samples) const {
  std::vector<std::vector<std::int64_t>> out;
  const auto key = sorted_key.to(torch::kCPU);
  const auto sample = key.div(leaves_, "floor"), leaf = key.remainder(leaves_);
  std::int64_t nodes = 1, below = leaves_;
  for (std::int64_t d = 0; d < depth(); ++d) {
    const auto group = sample * nodes + leaf.div(below, "floor");
    const auto counts = torch::bincount(group, {}, samples * nodes).contiguous();
    out.emplace_back(counts.data_ptr<std::int64_t>(), counts.data_ptr<std::int64_t>() + counts.numel());
    if (d + 1 < depth()) {
      nodes *= branching_;
      below /= branching_;
    }
  }
  return out;
}

torch::Tensor ModuleTreeImpl::forward(const torch::Tensor& x, const torch::Tensor& leaf) {
  const std::int64_t rows = x.size(0), samples = modlab::nn::folded_samples();
  if (rows % samples != 0)
    throw std::invalid_argument("ModuleTree: " + std::to_string(rows) + " rows do not split into K = " +
                                std::to_string(samples) + " samples");
  const auto sample = torch::arange(rows, leaf.options()).div(rows / samples, "floor");
  const auto sorted = torch::sort(sample * leaves_ + leaf, c10::optional<bool>(true), /*dim=*/0, /*descending=*/false);
  const auto key = std::get<0>(sorted), perm = std::get<1>(sorted);
  const auto counts = level_counts(key, samples);
  auto h = x.index_select(0, perm);
  for (std::size_t d = 0; d < convs.size(); ++d)
    h = torch::relu(modlab::nn::max_pool2x2(convs[d]->forward_routed(h, counts[d])));
  h = torch::relu(fc_hidden->forward_routed(h.flatten(1), counts.back()));
  h = fc_out->forward_routed(h, counts.back());
  const auto inverse = torch::empty_like(perm).scatter_(0, perm, torch::arange(rows, perm.options()));
  return h.index_select(0, inverse);
}

std::vector<std::string> leaf_paths(std::int64_t leaves) {
  std::int64_t bits = 0;
  while ((std::int64_t{1} << bits) < leaves) ++bits;
  std::vector<std::string> out;
  for (std::int64_t l = 0; l < leaves; ++l) {
    std::string s;
    for (std::int64_t b = bits - 1; b >= 0; --b) s += ((l >> b) & 1) ? '1' : '0';
    out.push_back(s.empty() ? "-" : s);
  }
  return out;
}

}  // namespace modlab::goe
