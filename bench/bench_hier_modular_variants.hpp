// The model variants of the hier_modular Boolean sweeps a benchmark runs: each a sweep file under
// sweeps/hier_modular/ and the `sweep.zip` that selects it (with the reference protocol).
#pragma once

#include <string>
#include <vector>

namespace bench {

struct Variant {
  std::string name;     ///< as hier_modular_ref.py --models names it
  std::string label;    ///< table row
  std::string sweep;    ///< file under sweeps/hier_modular/
  std::string zip;      ///< --set sweep.zip=... selecting this variant (and the reference protocol, not the ablation)
};

const std::vector<Variant> kVariants = {
    {"mlp", "MLP 6-36-36-36-2", "mlp.toml", R"([{ "dataset.train_noise" = [0.1] }])"},
    {"modular", "modular, learned routing, tau=2", "modular.toml",
     R"([{ "model.tau" = [2.0], "model.use_gumbel" = [false], "model.per_sample_routing" = [false], "model.known_module_inputs" = [false] }])"},
    {"modular_gumbel", "modular, learned, Gumbel, per-sample, tau=1", "modular.toml",
     R"([{ "model.tau" = [1.0], "model.use_gumbel" = [true], "model.per_sample_routing" = [true], "model.known_module_inputs" = [false] }])"},
    {"modular_known", "modular, known routing", "modular.toml",
     R"([{ "model.tau" = [2.0], "model.use_gumbel" = [false], "model.per_sample_routing" = [false], "model.known_module_inputs" = [true] }])"},
    {"shared", "shared modules, learned", "shared.toml",
     R"([{ "model.known_module_inputs" = [false], "model.known_module_locations" = [false] }])"},
    {"shared_known", "shared modules, known routing + locations", "shared.toml",
     R"([{ "model.known_module_inputs" = [true], "model.known_module_locations" = [true] }])"},
};

/// The --set arguments selecting the [6,3,2,2] half of the Boolean sweeps: 7 training fractions,
/// `seeds` seeds, `epochs` epochs.
inline std::string boolean_grid_sets(int seeds, int epochs) {
  return " --set 'sweep.grid={ \"dataset.structure\" = [[6, 3, 2, 2]], \"dataset.train_fraction\" = "
         "[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9] }' --set sweep.seeds=" +
         std::to_string(seeds) + " --set train.epochs=" + std::to_string(epochs);
}

}  // namespace bench
