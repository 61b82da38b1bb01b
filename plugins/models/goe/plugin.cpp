// The goe plugin: the graph of experts and its reference chains.
#include "goe.hpp"

#include <modlab/plugin.hpp>

namespace modlab::goe {
namespace {

std::shared_ptr<Model> make_goe(const Config& c, const DatasetSpec& spec, Host& host) {
  return std::make_shared<GoeModel>(resolve_goe(c, spec), spec, host);
}

void check_goe(const Config& c, const DatasetSpec& spec) { resolve_goe(c, spec); }

void register_plugin(Registrar& r) {
  ModelEntry e;
  e.name = "goe";
  e.description = "graph of experts: a tree of modules, one path per sample from a frozen router (oracle, latent, random)";
  e.keys = goe_options().specs();
  e.factory = &make_goe;
  e.check = &check_goe;
  e.variants = {"router = \"latent\"\nparam_factor = 2\nvq_hidden = 8\nvq_res_hidden = 4\nvq_codes = 16",
                "router = \"random\"\nparam_factor = 2", "network = \"ref_sqA\"\nparam_factor = 2",
                "network = \"ref_sqB\"\nparam_factor = 3"};
  r.add_model(std::move(e));
}

}  // namespace
}  // namespace modlab::goe

MODLAB_PLUGIN("goe", modlab::kModelPlugin, "1.0.0", "graph of experts (tree of modules with frozen routers)",
              modlab::goe::register_plugin)
