#pragma once
/// @file routing_ops.hpp
/// Tensor operations of the hierarchically modular networks (hier_modular §5.3): top-k input
/// routing with straight-through one-hot selectors, hard Gumbel-softmax module locations, and
/// module banks evaluated for all modules of a layer at once. Header-only so the tests can check
/// the operations directly (gradients in double precision).
///
/// Shapes: B batch, T tasks, M modules (slots) of a layer, I its input width, k inputs per module,
/// S shared modules. Routing logits are stored as [T, M, I] (the reference's R ∈ R^{T×I×M} with the
/// input axis last, so top-k runs over the last axis). Routed module inputs are [B, M·k], module
/// m's k inputs in columns m·k … m·k + k − 1, which is the layout the banks' block-diagonal
/// matmuls read.

#include <modlab/nn/functional.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/population.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace modlab::hier_modular {

/// How one routing layer selects its inputs in this forward pass.
struct RouteMode {
  std::int64_t k = 2;       ///< inputs per module (top-k)
  double tau = 1.0;         ///< s = σ(z / τ); τ = 1 is the reference's τ = None
  bool noise = false;       ///< add Gumbel noise G = −log(Exp(1)) to the logits
  bool per_sample = false;  ///< logits indexed per sample by task id ([B, M, I], noise per sample)
  bool member_tau = false;  ///< τ is the `tau` option: in a population, each member's own
};

/// The result of routing: module inputs and the indices they came from.
struct Routed {
  torch::Tensor inputs;   ///< [B, M·k]: input j of module m for sample b at column m·k + j
  torch::Tensor indices;  ///< [N, M, k] int64, N = B (per sample) or T (per batch): selected inputs in rank order
};

namespace detail {

/// The straight-through selection u[b, m·k + j] = ⟨x_b, onehot_{m,j} − sg(s) + s⟩ as one autograd
/// node. Its forward value is the gathered input x[b, idx[m, j]]; its backward is the gradient of
/// the expression: ∂u/∂x = onehot (the s terms cancel in value) and ∂u[b, m·k + j]/∂s[n(b), m, i] =
/// x[b, i] for every j. Written out instead of composed from ~10 small ops (zeros, scatter, sub,
/// add, matmul and their backward nodes), which dominate the cost of a step on 64-row batches.
struct StraightThroughSelect : public torch::autograd::Function<StraightThroughSelect> {
  /// x [B, I]; s [N, M, I] scores; idx [N', M, k] with N' = 1 (one routing for the batch) or B (per
  /// sample); task [B] when s holds one routing per task (N = T) that samples share, else undefined.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& s,
                               const torch::Tensor& idx, const c10::optional<torch::Tensor>& task) {
    ctx->save_for_backward({x, idx, task.value_or(torch::Tensor())});
    ctx->saved_data["n"] = s.size(0);
    const std::int64_t B = x.size(0), M = idx.size(1), k = idx.size(2);
    if (idx.size(0) == 1) return x.index_select(1, idx.reshape({M * k}));
    return x.gather(1, idx.reshape({B, M * k}));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& idx = saved[1];
    const auto& task = saved[2];
    const std::int64_t N = ctx->saved_data["n"].toInt();
    const std::int64_t B = x.size(0), M = idx.size(1), k = idx.size(2);
    const auto& g = grads[0];  // [B, M·k]
    torch::Tensor gx, gs;
    if (ctx->needs_input_grad(0)) {
      gx = idx.size(0) == 1 ? torch::zeros_like(x).index_add_(1, idx.reshape({M * k}), g)
                            : torch::zeros_like(x).scatter_add_(1, idx.reshape({B, M * k}), g);
    }
    if (ctx->needs_input_grad(1)) {
      const auto gm = g.reshape({B, M, k}).sum(-1);  // [B, M]
      if (task.defined()) {  // per task: Σ over the samples of each task
        gs = torch::zeros({N, M, x.size(1)}, x.options()).index_add_(0, task, gm.unsqueeze(2) * x.unsqueeze(1));
      } else if (N == 1) {  // one routing: Σ over the batch
        gs = gm.t().mm(x).unsqueeze(0);
      } else {  // per sample
        gs = gm.unsqueeze(2) * x.unsqueeze(1);
      }
    }
    return {gx, gs, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace detail

/// Logits with K override samples folded into the batch (modlab/nn/layers.hpp), [K, T, …], as K·T
/// tasks, and the task among them of each of the `rows` = K·B rows (row r belongs to sample r / B),
/// so that every operation below runs all K samples (a population's members, an analyzer's mask
/// samples) at once. Plain logits (`plain_dims` axes) come back as they are with `task`.
struct TaskLogits {
  torch::Tensor logits;  ///< [T', …] with T' = K·T, sample k's task t at k·T + t
  torch::Tensor task;    ///< [rows] int64 task ids into T' (undefined when plain and `task` was)
};

inline TaskLogits fold_samples_into_tasks(const torch::Tensor& logits, std::int64_t plain_dims, const torch::Tensor& task,
                                          std::int64_t rows) {
  if (logits.dim() == plain_dims) return {logits, task};
  const std::int64_t K = logits.size(0), T = logits.size(1);
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(logits.device());
  auto sample = torch::arange(K, opts).repeat_interleave(rows / K);
  return {logits.flatten(0, 1), task.defined() ? task + sample * T : sample * T};
}

/// `z` [N, …] over the temperature `tau`; with `member_tau`, inside a population whose members
/// differ in the `tau` option, over each member's own (its rows of N: its tasks or its samples).
inline torch::Tensor tempered(const torch::Tensor& z, double tau, bool member_tau) {
  if (member_tau) {
    const auto own = modlab::member_option("tau", tau, z, 0);
    if (own.dim() > 0) return z / own;
  }
  return tau == 1.0 ? z : z / tau;
}

/// Routes `x` [B, I] through logits [T, M, I]. The selection scores are s = σ((R + G)/τ) (G only
/// with `mode.noise`); the top-k indices are taken on (R + G) itself, which orders inputs exactly like s
/// but without σ's float saturation making large logits tie. With gradients enabled and logits that
/// require grad, each selected input is ⟨x, onehot − sg(s) + s⟩ (straight-through: the forward value
/// is exactly the selected input, the gradient reaches R through s); otherwise the inputs are gathered
/// directly. `task` [B] int64 is only read when T > 1 or `mode.per_sample`.
inline Routed route(const torch::Tensor& x, const torch::Tensor& logits, const torch::Tensor& task, const RouteMode& mode) {
  const std::int64_t B = x.size(0), I = x.size(1), T = logits.size(0), M = logits.size(1), k = mode.k;
  torch::Tensor z = mode.per_sample ? (T == 1 ? logits.expand({B, M, I}) : logits.index_select(0, task)) : logits;
  if (mode.noise) z = z + modlab::nn::sample_gumbel(z.sizes(), z.options());
  Routed r;
  r.indices = std::get<1>(z.topk(k, -1, /*largest=*/true, /*sorted=*/true));  // [N, M, k]
  // One routing for the whole batch (N = 1), one per sample, or one per task gathered per sample.
  const bool per_task = !mode.per_sample && T > 1;
  const auto idx = per_task ? r.indices.index_select(0, task) : r.indices;  // [1 or B, M, k]
  if (torch::GradMode::is_enabled() && logits.requires_grad()) {
    const auto s = torch::sigmoid(tempered(z, mode.tau, mode.member_tau));  // [N, M, I]
    r.inputs = detail::StraightThroughSelect::apply(x, s, idx, per_task ? c10::optional<torch::Tensor>(task) : c10::nullopt);
  } else if (idx.size(0) == 1) {
    r.inputs = x.index_select(1, idx.reshape({M * k}));
  } else {
    r.inputs = x.gather(1, idx.reshape({B, M * k}));
  }
  return r;
}

/// One-hot choice of a shared module per slot from location logits [T, slots, S]: a hard
/// Gumbel-softmax (straight-through, top-1) when the logits are learned, the plain argmax otherwise.
/// Returns [N, slots, S] with N = B (per sample) or T. `member_tau` as in `tempered`.
inline torch::Tensor locations(const torch::Tensor& logits, const torch::Tensor& task, std::int64_t batch, double tau,
                               bool noise, bool per_sample, bool member_tau = false) {
  const std::int64_t T = logits.size(0);
  torch::Tensor z = per_sample ? (T == 1 ? logits.expand({batch, logits.size(1), logits.size(2)})
                                         : logits.index_select(0, task))
                               : logits;
  if (noise) z = z + modlab::nn::sample_gumbel(z.sizes(), z.options());
  if (torch::GradMode::is_enabled() && logits.requires_grad())
    return modlab::nn::gumbel_softmax(tempered(z, tau, member_tau), 1.0, /*hard=*/true, -1, /*noise=*/false);
  return torch::zeros_like(z).scatter_(-1, z.argmax(-1, /*keepdim=*/true), 1.0);
}

/// A bank of E small MLPs (in → hidden… → 1, ReLU between layers, no output activation) stored as
/// stacked weights (modlab::nn::StackedLinear, weight [E, in, out]) and evaluated for all members at
/// once. `forward` is the plain stacked evaluation; `forward_blocks` and `forward_shared` compute
/// the same numbers as one dense matmul per layer with a block-diagonal weight (built by one
/// multiply with a fixed block mask), which for banks of 2-3 tiny modules is several times cheaper
/// than batched matmuls that loop over members. Both fall back to `forward` when an analyzer has set
/// weight overrides.
class ModuleBankImpl : public torch::nn::Module {
 public:
  ModuleBankImpl(std::int64_t members, const std::vector<std::int64_t>& arch) : members_(members) {
    for (std::size_t i = 0; i + 1 < arch.size(); ++i)
      layers_.push_back(register_module("fc" + std::to_string(i),
                                        modlab::nn::StackedLinear(members, arch[i], arch[i + 1])));
    block_mask_ = register_buffer("block_mask", torch::eye(members).view({members, 1, members, 1}));
  }

  /// x [E, R, in] → [E, R, 1].
  torch::Tensor forward(torch::Tensor x) {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      if (i > 0) x = torch::relu(x);
      x = layers_[i]->forward(x);
    }
    return x;
  }

  /// Member m reads columns m·in … m·in + in − 1 of x [R, E·in] → [R, E].
  torch::Tensor forward_blocks(const torch::Tensor& x) {
    const std::int64_t R = x.size(0), in = layers_.front()->in_features;
    if (overridden()) return forward(x.view({R, members_, in}).permute({1, 0, 2})).squeeze(-1).t();
    return tail(torch::addmm(flat_bias(0), x, block_diagonal(0)));
  }

  /// Every member reads the same input x [R, in] → [R, E].
  torch::Tensor forward_shared(const torch::Tensor& x) {
    const std::int64_t R = x.size(0), in = layers_.front()->in_features;
    if (overridden()) return forward(x.unsqueeze(0).expand({members_, R, in})).squeeze(-1).t();
    const auto& w = layers_.front()->weight;  // [E, in, h] → [in, E·h]
    return tail(torch::addmm(flat_bias(0), x, w.permute({1, 0, 2}).reshape({in, members_ * w.size(2)})));
  }

  const std::vector<modlab::nn::StackedLinear>& layers() const { return layers_; }

 private:
  bool overridden() const {
    for (const auto& l : layers_)
      if (l->has_overrides()) return true;
    return false;
  }
  /// Weight of layer i as a block-diagonal [E·in, E·out] matrix.
  torch::Tensor block_diagonal(std::size_t i) const {
    const auto& w = layers_[i]->weight;  // [E, in, out]
    return (w.unsqueeze(2) * block_mask_).reshape({members_ * w.size(1), members_ * w.size(2)});
  }
  torch::Tensor flat_bias(std::size_t i) const { return layers_[i]->bias.reshape({-1}); }
  /// Layers 1… on the concatenated hidden units [R, E·h] → [R, E].
  torch::Tensor tail(torch::Tensor h) const {
    for (std::size_t i = 1; i < layers_.size(); ++i) h = torch::addmm(flat_bias(i), torch::relu(h), block_diagonal(i));
    return h;
  }

  std::int64_t members_;
  std::vector<modlab::nn::StackedLinear> layers_;
  torch::Tensor block_mask_;
};
TORCH_MODULE(ModuleBank);

/// Combines the outputs of all S shared modules on every slot, y [B, slots, S], with one-hot
/// weights w [N, slots, S] (N = 1, T or B): out[b, slot] = Σ_s w[n(b), slot, s] · y[b, slot, s] → [B, slots].
inline torch::Tensor combine_locations(const torch::Tensor& y, const torch::Tensor& w, const torch::Tensor& task,
                                       bool per_sample) {
  if (per_sample || w.size(0) == 1) return (y * w).sum(-1);
  return (y * w.index_select(0, task)).sum(-1);
}

}  // namespace modlab::hier_modular
