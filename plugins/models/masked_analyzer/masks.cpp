// Mask selection, sampling and overrides (see masks.hpp).
#include "masks.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <map>
#include <set>

namespace modlab::masked {
namespace {

std::string module_of(const std::string& param) {
  const auto dot = param.rfind('.');
  return dot == std::string::npos ? "" : param.substr(0, dot);
}

std::string leaf_of(const std::string& param) {
  const auto dot = param.rfind('.');
  return dot == std::string::npos ? param : param.substr(dot + 1);
}

/// Names of the modules that normalise (LayerNorm, BatchNorm).
std::set<std::string> norm_modules(Model& model) {
  std::set<std::string> out;
  for (const auto& item : model.named_modules()) {
    const auto* m = item.value().get();
    if (dynamic_cast<const modlab::nn::LayerNormImpl*>(m) || dynamic_cast<const modlab::nn::BatchNormImpl*>(m))
      out.insert(item.key());
  }
  return out;
}

/// Stacked layers (E experts or modules in one parameter, member e at index e of axis 0) by name.
std::map<std::string, std::int64_t> stacked_modules(Model& model) {
  std::map<std::string, std::int64_t> out;
  for (const auto& item : model.named_modules()) {
    const auto* m = item.value().get();
    if (const auto* l = dynamic_cast<const modlab::nn::StackedLinearImpl*>(m)) out[item.key()] = l->members;
    if (const auto* c = dynamic_cast<const modlab::nn::StackedConv2dImpl*>(m)) out[item.key()] = c->members;
  }
  return out;
}

}  // namespace

std::vector<MaskedParam> select_masked(Model& model, const MaskFilter& filter, const std::string& model_name) {
  const auto maskable = modlab::nn::maskable_parameters(model);
  std::set<std::string> can(maskable.begin(), maskable.end());
  for (const auto& [name, why] : model.unmaskable_parameters()) can.erase(name);  // overridable, not a weight
  const auto norms = norm_modules(model);
  const auto stacked = stacked_modules(model);
  auto params = model.named_parameters();
  std::vector<MaskedParam> out;
  for (const auto& p : params) {
    const std::string& name = p.key();
    if (!can.count(name) || name.find("embedding") != std::string::npos) continue;
    if (!filter.mask_biases && leaf_of(name) == "bias") continue;
    if (!filter.mask_norms && norms.count(module_of(name))) continue;
    auto st = stacked.find(module_of(name));
    out.push_back({name, module_of(name), p.value(), st == stacked.end() ? 0 : st->second});
  }
  if (out.empty())
    throw ConfigError("masked_analyzer: the inner model '" + model_name + "' has nothing to mask (" +
                      std::to_string(maskable.size()) + " maskable parameters, none left after the filters: " +
                      "embeddings are never masked, biases only with bias_no_mask = false, norms only with norm_no_mask = false)");
  return out;
}

torch::Tensor hard_mask(const torch::Tensor& logits) { return logits.detach() >= 0; }

std::map<std::string, torch::Tensor> masked_overrides(const std::vector<MaskedParam>& params,
                                                      const std::vector<torch::Tensor>& masks) {
  std::map<std::string, torch::Tensor> out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto w = params[i].weight.detach();
    const auto& m = masks[i];
    out[params[i].name] = (m.dim() > w.dim() ? w.unsqueeze(0) : w) * m.to(w.scalar_type());
  }
  return out;
}

std::map<std::string, torch::Tensor> stacked_overrides(const std::vector<MaskedParam>& params,
                                                       const std::vector<std::vector<torch::Tensor>>& configs) {
  std::vector<torch::Tensor> stacked;
  for (std::size_t i = 0; i < params.size(); ++i) {
    std::vector<torch::Tensor> per;
    for (const auto& c : configs) per.push_back(c[i].to(params[i].weight.scalar_type()));
    stacked.push_back(torch::stack(per));
  }
  return masked_overrides(params, stacked);
}

}  // namespace modlab::masked
