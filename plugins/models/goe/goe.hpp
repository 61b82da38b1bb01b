#pragma once
// The `goe` model: a tree of modules with one root-to-leaf path per sample, chosen by a frozen
// router (oracle, latent VQ-VAE + k-means, or fixed random), and the reference chains (goe §2).

#include "tree.hpp"
#include "vqvae.hpp"

#include <modlab/host.hpp>
#include <modlab/model.hpp>
#include <modlab/options.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab::goe {

/// The resolved `[model]` table.
struct GoeOptions {
  std::string network = "tree";   ///< tree | ref_sqB | ref_sqA
  std::string router = "oracle";  ///< oracle | latent | random (network = "tree")
  std::int64_t param_factor = 4;  ///< width factor p
  std::int64_t depth = 0;         ///< levels D; 0 = the §2.2 stack for the input
  bool random_routing_eval = true;
  std::int64_t vq_hidden = 32, vq_res_hidden = 32, vq_res_layers = 2, vq_codes = 128, vq_code_dim = 4;
  double vq_beta = 0.25;
  std::int64_t kmeans_restarts = 10, kmeans_iterations = 300;
  std::string path_order = "top_split_first";  ///< top_split_first | reference
  bool share_router = true;
  std::int64_t reconstructions = 8;
};

const Options<GoeOptions>& goe_options();

/// The `[model]` table parsed and checked against the dataset (the depth resolved): ConfigError
/// naming the key and its file:line when the dataset cannot be used.
GoeOptions resolve_goe(const Config& c, const DatasetSpec& spec);

/// The trainer settings of the router phase unless `[train.phases.router]` sets them (goe §2.3).
std::string router_phase_defaults(const DatasetSpec& spec);

class GoeModel : public Model {
 public:
  GoeModel(const GoeOptions& o, const DatasetSpec& spec, Host& host);

  Output forward(const Batch& batch) override;
  Losses loss(const Batch& batch, const Output& output) override;
  Losses train_step(const Batch& batch, StepContext& ctx) override;
  torch::Tensor correct(const Batch& batch, const Output& output) override;
  std::vector<Phase> phases() const override;
  void begin_phase(const Phase& phase) override;
  std::vector<ParamGroup> param_groups(const std::string& phase) override;
  void begin_epoch(const EpochContext& ctx) override;
  void eval_begin(const std::string& split) override;
  void eval_batch(const std::string& split, const Batch& batch, const Output& output, MetricSet& metrics) override;
  void eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) override;
  void record(Recorder& recorder) override;
  std::map<std::string, std::string> unmaskable_parameters() const override;

  /// The leaf each row of `batch` is routed to by the configured router.
  torch::Tensor route(const Batch& batch);
  /// A uniformly random leaf per example, fixed by (seed, split, example index): the "w/ Random
  /// Routing" evaluation.
  torch::Tensor random_leaf(const std::string& split, const torch::Tensor& indices) const;
  /// Multiply-accumulates of a one-sample forward of the tree (router excluded) and of the router.
  std::int64_t macs_per_sample();
  std::int64_t router_macs_per_sample();
  /// Parameters of the tree (the router's are not counted).
  std::int64_t num_parameters() const;
  /// "goe_oracle", "goe_latent", "goe_random", "ref_sqB" or "ref_sqA".
  std::string label() const;

  ModuleTree tree{nullptr};
  LatentRouter latent{nullptr};

 private:
  bool routed() const { return o_.network == "tree"; }
  void fit_clusters(const Split& train);
  void load_shared_router();
  void publish_router();
  void record_routing(const std::string& split, Recorder& recorder);

  GoeOptions o_;
  DatasetSpec spec_;
  Host& host_;
  std::string phase_ = "train";
  mutable std::unique_ptr<SharedFile> shared_;
  mutable bool shared_asked_ = false;
  // per evaluated split
  torch::Tensor leaf_counts_, routing_vs_group_, reconstructions_;
};

}  // namespace modlab::goe
