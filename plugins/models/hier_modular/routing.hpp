#pragma once
/// @file routing.hpp
/// The true structure of the hierarchically modular Boolean tasks (hier_modular §5.1) and what it
/// means for a learned routing to recover it. Free of LibTorch, so tests check it on hand-made
/// routings.
///
/// A network has hidden layers ℓ = 0 … L−1 with M_ℓ modules (or slots) each, and an output routing.
/// Module m of layer ℓ reads k inputs, picked by index from the previous layer's outputs (the raw
/// inputs for ℓ = 0); the output routing picks one last-layer output per network output.
///
/// **Recovering the true routing.** A learned routing recovers the true one when it computes the
/// true function *for every choice of module functions that the true routing admits*, i.e. it is
/// the true wiring up to the symmetries that never change the function:
///   1. the order of a module's inputs: every true module (XOR in layer 0, AND / OR above) is a
///      symmetric function, so a module reading (b, a) instead of (a, b) can learn the same function;
///   2. a permutation of the modules inside a hidden layer, applied consistently to the indices the
///      next layer (or the output routing) uses to read that layer;
///   3. for shared modules, a relabelling of the shared module ids (which pool member is "XOR").
/// The output routing is compared in order: output j must read the module that computes target j.
/// Formally: there are bijections π_ℓ (learned module → true module, per hidden layer, the same for
/// every task because modules are shared by tasks) such that for every task and every learned
/// module m of layer ℓ, π_{ℓ−1}(inputs(m)) = true_inputs(π_ℓ(m)) as sets (π_{−1} = identity), and
/// π_{L−1}(output_j) = true_output_j for each output j. With k > 2 inputs per module
/// (the module-input-size experiment) the condition is true_inputs ⊆ π_{ℓ−1}(inputs(m)): the module
/// can ignore the extra inputs. Shared modules additionally need a bijection σ of module ids with
/// σ(module(m)) = true_module(π_ℓ(m)) for every slot.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace modlab::hier_modular {

/// Selected input indices of one module, in rank order (largest routing score first).
using Indices = std::vector<std::int64_t>;

/// The routing of one task.
struct Routing {
  /// Per hidden layer, per module (slot): its inputs, as indices into the previous layer.
  std::vector<std::vector<Indices>> layers;
  /// Per network output: the index of the last hidden layer's output it reads.
  Indices output;
  /// Shared modules only: per hidden layer, per slot, the id of the shared module filling it.
  std::vector<Indices> locations;
};

/// Which parts `recovers` compares.
struct RecoveryCheck {
  bool inputs = true;     ///< module input routing (sets, up to module permutations)
  bool outputs = true;    ///< output routing (ordered)
  bool locations = true;  ///< slot → shared module (up to relabelling); ignored when either side has none
};

/// "6,3,2,2" → {6, 3, 2, 2}; empty on anything else than comma-separated integers.
inline std::vector<std::int64_t> parse_structure(const std::string& text) {
  std::vector<std::int64_t> out;
  std::string cur;
  for (char c : text + ",") {
    if (c == ',') {
      if (cur.empty()) return {};
      try {
        out.push_back(std::stoll(cur));
      } catch (...) {
        return {};
      }
      cur.clear();
    } else if (c != ' ') {
      if (c < '0' || c > '9') return {};
      cur += c;
    }
  }
  return out;
}

/// Hidden layer widths of a structure: {6, 3, 2, 2} → {3, 2} (first = inputs, last = outputs).
inline std::vector<std::int64_t> hidden_layers(const std::vector<std::int64_t>& structure) {
  if (structure.size() < 3) return {};
  return {structure.begin() + 1, structure.end() - 1};
}

/// The true routing of task `task` for one of the supported structures ([6,2,2], [6,3,2,2],
/// [6,3,3,2,2]), or nullopt. Task 0 is the reference's table (`_module_input_indices.pkl`,
/// `_slot_module_indices_shared_modules.pkl`):
///   [6,2,2]      [[0,1],[2,3]] → output [0,1];                       locations [[0,0]]
///   [6,3,2,2]    [[0,1],[2,3],[4,5]] → [[0,1],[1,2]] → output [0,1]; locations [[0,0,0],[1,1]]
///   [6,3,3,2,2]  [[0,1],[2,3],[4,5]] → [[0,1],[1,2],[0,2]] → [[0,2],[1,2]] → output [0,1];
///                locations [[0,0,0],[1,1,1],[2,2]]
/// Task t > 0 of the multi-task variant feeds (f_{1+t}, f_{2+t}, f_{3+t}) (indices mod 3) to the upper
/// layers, which is the same as layer-0 module j reading the input pair (j + t) mod 3.
inline std::optional<Routing> true_routing(const std::vector<std::int64_t>& structure, std::int64_t task = 0) {
  Routing r;
  const std::int64_t t = ((task % 3) + 3) % 3;
  auto pair = [t](std::int64_t j) {
    const std::int64_t p = (j + t) % 3;
    return Indices{2 * p, 2 * p + 1};
  };
  if (structure == std::vector<std::int64_t>{6, 2, 2}) {
    r.layers = {{pair(0), pair(1)}};
    r.locations = {{0, 0}};
  } else if (structure == std::vector<std::int64_t>{6, 3, 2, 2}) {
    r.layers = {{pair(0), pair(1), pair(2)}, {{0, 1}, {1, 2}}};
    r.locations = {{0, 0, 0}, {1, 1}};
  } else if (structure == std::vector<std::int64_t>{6, 3, 3, 2, 2}) {
    r.layers = {{pair(0), pair(1), pair(2)}, {{0, 1}, {1, 2}, {0, 2}}, {{0, 2}, {1, 2}}};
    r.locations = {{0, 0, 0}, {1, 1, 1}, {2, 2}};
  } else {
    return std::nullopt;
  }
  r.output = {0, 1};
  return r;
}

/// The k inputs a known routing selects for a module whose true inputs are `truth`, in rank order:
/// the true inputs, then (k > 2, the module-input-size experiment) the lowest-index other inputs.
/// Empty when k < |truth| or k > `width`.
inline Indices known_selection(const Indices& truth, std::int64_t k, std::int64_t width) {
  if (k < static_cast<std::int64_t>(truth.size()) || k > width) return {};
  Indices out = truth;
  for (std::int64_t i = 0; i < width && static_cast<std::int64_t>(out.size()) < k; ++i) {
    bool used = false;
    for (auto v : out) used = used || v == i;
    if (!used) out.push_back(i);
  }
  return out;
}

/// Known-init logit of the j-th selected input of a module reading k inputs: the reference's 1.1
/// and 1.0 for k = 2, and 1.1 − j/1000 for the module-input-size experiment (k ≠ 2). Only the order
/// matters for the selection; every other input gets 0.
inline double known_logit(std::int64_t j, std::int64_t k) {
  if (k == 2) return j == 0 ? 1.1 : 1.0;
  return 1.1 - static_cast<double>(j) / 1000.0;
}

namespace detail {

class RecoverySearch {
 public:
  RecoverySearch(const std::vector<Routing>& learned, const std::vector<Routing>& truth, RecoveryCheck check)
      : learned_(learned), truth_(truth), check_(check) {}

  bool run() {
    if (learned_.size() != truth_.size() || learned_.empty()) return false;
    layers_ = truth_[0].layers.size();
    for (std::size_t k = 0; k < truth_.size(); ++k) {
      const Routing& a = learned_[k];
      const Routing& b = truth_[k];
      if (a.layers.size() != layers_ || b.layers.size() != layers_) return false;
      for (std::size_t l = 0; l < layers_; ++l)
        if (a.layers[l].size() != b.layers[l].size() || a.layers[l].size() != truth_[0].layers[l].size()) return false;
      if (check_.outputs && a.output.size() != b.output.size()) return false;
      if (a.locations.empty() || b.locations.empty()) check_.locations = false;
    }
    if (check_.locations)
      for (std::size_t k = 0; k < truth_.size(); ++k) {
        if (learned_[k].locations.size() != layers_ || truth_[k].locations.size() != layers_) return false;
        for (std::size_t l = 0; l < layers_; ++l)
          if (learned_[k].locations[l].size() != learned_[k].layers[l].size() ||
              truth_[k].locations[l].size() != truth_[k].layers[l].size())
            return false;
      }
    perm_.assign(layers_, {});
    return layer(0);
  }

 private:
  bool layer(std::size_t l) {
    if (l == layers_) return outputs_ok();
    const std::size_t m = truth_[0].layers[l].size();
    perm_[l].assign(m, -1);
    std::vector<bool> used(m, false);
    return assign(l, 0, used);
  }

  bool assign(std::size_t l, std::size_t m, std::vector<bool>& used) {
    if (m == perm_[l].size()) return layer(l + 1);
    for (std::size_t t = 0; t < used.size(); ++t) {
      if (used[t] || !inputs_ok(l, m, t)) continue;
      std::vector<std::pair<std::int64_t, std::int64_t>> bound;
      if (!bind_locations(l, m, t, bound)) {
        unbind(bound);
        continue;
      }
      used[t] = true;
      perm_[l][m] = static_cast<std::int64_t>(t);
      if (assign(l, m + 1, used)) return true;
      used[t] = false;
      perm_[l][m] = -1;
      unbind(bound);
    }
    return false;
  }

  bool inputs_ok(std::size_t l, std::size_t m, std::size_t t) const {
    if (!check_.inputs) return true;
    for (std::size_t k = 0; k < truth_.size(); ++k) {
      const Indices& sel = learned_[k].layers[l][m];
      const Indices& tru = truth_[k].layers[l][t];
      if (sel.size() < tru.size()) return false;
      std::set<std::int64_t> mapped;
      for (auto i : sel) {
        if (l == 0) {
          mapped.insert(i);
        } else {
          if (i < 0 || i >= static_cast<std::int64_t>(perm_[l - 1].size())) return false;
          mapped.insert(perm_[l - 1][static_cast<std::size_t>(i)]);
        }
      }
      for (auto i : tru)
        if (!mapped.count(i)) return false;
    }
    return true;
  }

  bool bind_locations(std::size_t l, std::size_t m, std::size_t t, std::vector<std::pair<std::int64_t, std::int64_t>>& bound) {
    if (!check_.locations) return true;
    for (std::size_t k = 0; k < truth_.size(); ++k) {
      const std::int64_t a = learned_[k].locations[l][m];
      const std::int64_t b = truth_[k].locations[l][t];
      auto fa = to_true_.find(a);
      auto fb = to_learned_.find(b);
      if (fa != to_true_.end() || fb != to_learned_.end()) {
        if (fa == to_true_.end() || fb == to_learned_.end() || fa->second != b || fb->second != a) return false;
        continue;
      }
      to_true_[a] = b;
      to_learned_[b] = a;
      bound.emplace_back(a, b);
    }
    return true;
  }

  void unbind(const std::vector<std::pair<std::int64_t, std::int64_t>>& bound) {
    for (const auto& [a, b] : bound) {
      to_true_.erase(a);
      to_learned_.erase(b);
    }
  }

  bool outputs_ok() const {
    if (!check_.outputs) return true;
    const auto& last = perm_[layers_ - 1];
    for (std::size_t k = 0; k < truth_.size(); ++k) {
      const Indices& out = learned_[k].output;
      for (std::size_t j = 0; j < out.size(); ++j) {
        if (out[j] < 0 || out[j] >= static_cast<std::int64_t>(last.size())) return false;
        if (last[static_cast<std::size_t>(out[j])] != truth_[k].output[j]) return false;
      }
    }
    return true;
  }

  const std::vector<Routing>& learned_;
  const std::vector<Routing>& truth_;
  RecoveryCheck check_;
  std::size_t layers_ = 0;
  std::vector<std::vector<std::int64_t>> perm_;        // per layer: learned module → true module
  std::map<std::int64_t, std::int64_t> to_true_, to_learned_;  // shared module ids, both directions
};

}  // namespace detail

/// Whether the learned routing (one entry per task) recovers the true one (same tasks), up to the
/// symmetries described at the top of this file. Mismatched sizes are simply "not recovered".
inline bool recovers(const std::vector<Routing>& learned, const std::vector<Routing>& truth, RecoveryCheck check = {}) {
  return detail::RecoverySearch(learned, truth, check).run();
}

}  // namespace modlab::hier_modular
