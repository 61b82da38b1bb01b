// The `goe` model (goe §2.1–§2.5): the tree of modules, its routers, and what a run records.
#include "goe.hpp"

#include "clustering.hpp"

#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace modlab::goe {

const Options<GoeOptions>& goe_options() {
  using O = GoeOptions;
  static const auto o =
      Options<O>()
          .key("network", &O::network, "tree of modules, or a reference chain (ref_sqB: one path; ref_sqA: widths doubled after level 1)")
          .choices({"tree", "ref_sqB", "ref_sqA"})
          .key("router", &O::router, "path of each sample (tree): the dataset's group id, VQ-VAE + k-means, or fixed random per image")
          .choices({"oracle", "latent", "random"})
          .key("param_factor", &O::param_factor, "width factor p (level i has p·2^i channels)").in_range(1, 256)
          .key("depth", &O::depth, "levels D of the tree (0: 3 for 28×28 inputs, 4 for 32×32)").in_range(0, 8)
          .key("random_routing_eval", &O::random_routing_eval, "also evaluate every split with a uniform random path per sample")
          .key("vq_hidden", &O::vq_hidden, "latent router: VQ-VAE hidden channels h (encoder h/2, h)").in_range(2, 1024)
          .key("vq_res_hidden", &O::vq_res_hidden, "latent router: channels inside the residual layers").in_range(1, 1024)
          .key("vq_res_layers", &O::vq_res_layers, "latent router: repeats of the (shared) residual layer").in_range(0, 16)
          .key("vq_codes", &O::vq_codes, "latent router: codebook size").in_range(2, 65536)
          .key("vq_code_dim", &O::vq_code_dim, "latent router: code dimension").in_range(1, 256)
          .key("vq_beta", &O::vq_beta, "latent router: weight of the codebook term of the VQ loss").at_least(0).finite()
          .key("kmeans_restarts", &O::kmeans_restarts, "latent router: k-means restarts (sklearn n_init)").in_range(1, 1000)
          .key("kmeans_iterations", &O::kmeans_iterations, "latent router: Lloyd iterations at most").in_range(1, 100000)
          .key("path_order", &O::path_order, "latent router: the first balanced split sets the root bit, or the deepest bit as the reference")
          .choices({"top_split_first", "reference"})
          .key("share_router", &O::share_router, "latent router: train once per seed and reuse across the runs of the results folder")
          .key("reconstructions", &O::reconstructions, "latent router: VQ-VAE reconstructions kept per evaluated split").in_range(0, 256);
  return o;
}

namespace {

std::int64_t pow2(std::int64_t b) { return std::int64_t{1} << b; }

/// (key, what is wrong) when the options cannot be built for `spec`; key "" when they can.
std::pair<std::string, std::string> incompatibility(GoeOptions& o, const DatasetSpec& spec) {
  const auto& s = spec.input_shape;
  if (spec.task != TaskKind::Classification)
    return {"plugin", "goe classifies; dataset " + spec.name + " is a " + task_kind_name(spec.task) + " task"};
  if (s.size() != 3 || s[1] != s[2])
    return {"plugin", "goe needs square images [C, H, W]; dataset " + spec.name + " gives inputs of " +
                          std::to_string(s.size()) + " dimensions" + (s.size() == 3 ? " that are not square" : "")};
  if (o.depth == 0) {
    if (s[1] == 28) o.depth = 3;
    else if (s[1] == 32) o.depth = 4;
    else return {"depth", "no default depth for " + std::to_string(s[1]) + "×" + std::to_string(s[2]) + " images; set it"};
  }
  if (o.depth < 2) return {"depth", "expected at least 2 levels (one convolution level and the classifier)"};
  if ((s[1] >> (o.depth - 1)) < 1)
    return {"depth", std::to_string(o.depth) + " levels pool the " + std::to_string(s[1]) + "×" + std::to_string(s[2]) +
                         " images of " + spec.name + " " + std::to_string(o.depth - 1) + " times, to nothing"};
  if (o.network != "tree") return {"", ""};
  const auto leaves = pow2(o.depth - 1);
  if (o.router == "oracle") {
    if (spec.group_kind.empty() || spec.group_names.empty())
      return {"router", "router \"oracle\" routes by the dataset's group ids, and dataset " + spec.name +
                            " has none (use a rotation or attribute-group dataset, or router = \"latent\")"};
    if (static_cast<std::int64_t>(spec.group_names.size()) > leaves)
      return {"router", "router \"oracle\" gives each of the " + std::to_string(spec.group_names.size()) + " " +
                            spec.group_kind + " groups of " + spec.name + " its own leaf, but " +
                            std::to_string(o.depth) + " levels have " + std::to_string(leaves) + " leaves"};
  }
  if (o.router == "latent" && (s[1] % 4 != 0 || o.vq_hidden % 2 != 0))
    return {o.vq_hidden % 2 ? "vq_hidden" : "router",
            o.vq_hidden % 2 ? "expected an even number (the encoder's first level has h/2 channels)"
                            : "the VQ-VAE halves the image twice; " + std::to_string(s[1]) + " is not a multiple of 4"};
  return {"", ""};
}

std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t text_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

/// A leaf per image from its bytes: the same image always takes the same path (goe_random).
torch::Tensor image_hash_leaf(const torch::Tensor& x, std::uint64_t seed, std::int64_t leaves) {
  const auto c = x.detach().to(torch::kCPU, torch::kFloat).contiguous();
  const auto rows = c.size(0), bytes = rows ? c.numel() / rows * 4 : 0;
  auto out = torch::empty({rows}, torch::kLong);
  auto* o = out.data_ptr<std::int64_t>();
  const auto* p = reinterpret_cast<const unsigned char*>(c.data_ptr<float>());
  for (std::int64_t r = 0; r < rows; ++r) {
    std::uint64_t h = 1469598103934665603ULL;
    for (std::int64_t b = 0; b < bytes; ++b) h = (h ^ p[r * bytes + b]) * 1099511628211ULL;
    o[r] = static_cast<std::int64_t>(mix64(h ^ seed) % static_cast<std::uint64_t>(leaves));
  }
  return out.to(x.device());
}

}  // namespace

std::string router_phase_defaults(const DatasetSpec& spec) {
  const bool has_val = std::find(spec.splits.begin(), spec.splits.end(), "val") != spec.splits.end();
  return "epochs = 1\nsteps_per_epoch = 1000\nbatch_size = 128\noptimizer = \"adam\"\nlr = 0.0003\n"
         "amsgrad = true\nweight_decay = 0.0\nschedule = \"constant\"\ngrad_clip = 0.0\neval_splits = [\"" +
         (has_val ? std::string("val") : spec.splits.front()) + "\"]\n";
}

GoeOptions resolve_goe(const Config& c, const DatasetSpec& spec) {
  GoeOptions o = goe_options().parse(c);
  auto [key, why] = incompatibility(o, spec);
  if (!key.empty()) c.fail(key, why);
  return o;
}

GoeModel::GoeModel(const GoeOptions& options, const DatasetSpec& spec, Host& host)
    : o_(options), spec_(spec), host_(host) {
  auto [key, why] = incompatibility(o_, spec_);
  if (!key.empty()) throw ConfigError("model." + key + ": " + why);
  const auto& s = spec_.input_shape;
  const auto shape = stack_shape(s[0], s[1], o_.depth, o_.param_factor, spec_.num_classes, o_.network == "ref_sqA");
  tree = register_module("tree", ModuleTree(shape, routed() ? 2 : 1));
  if (routed() && o_.router == "latent") {
    VqSettings v{o_.vq_hidden, o_.vq_res_hidden, o_.vq_res_layers, o_.vq_codes, o_.vq_code_dim, o_.vq_beta};
    latent = register_module("latent", LatentRouter(s[0], v, tree->leaves(), o_.vq_code_dim * (s[1] / 4) * (s[2] / 4)));
  }
}

std::string GoeModel::label() const { return routed() ? "goe_" + o_.router : o_.network; }

std::int64_t GoeModel::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& p : tree->parameters()) n += p.numel();
  return n;
}

std::int64_t GoeModel::macs_per_sample() {
  torch::NoGradGuard ng;
  const auto& s = spec_.input_shape;
  const auto dev = tree->fc_out->weight.device();
  modlab::nn::MacCounter count;
  tree->forward(torch::zeros({1, s[0], s[1], s[2]}, dev), torch::zeros({1}, torch::TensorOptions(dev).dtype(torch::kLong)));
  return count.total();
}

std::int64_t GoeModel::router_macs_per_sample() {
  if (!latent) return 0;
  torch::NoGradGuard ng;
  const auto& s = spec_.input_shape;
  modlab::nn::MacCounter count;
  latent->route(torch::zeros({1, s[0], s[1], s[2]}, latent->centres.device()));
  return count.total();
}

torch::Tensor GoeModel::route(const Batch& batch) {
  const auto rows = batch.inputs.size(0);
  if (!routed()) return torch::zeros({rows}, batch.inputs.options().dtype(torch::kLong));
  if (o_.router == "oracle") {
    if (!batch.groups.defined()) throw ArgumentError("goe: router \"oracle\" needs the batch's group ids");
    return batch.groups;
  }
  if (o_.router == "random") return image_hash_leaf(batch.inputs, host_.seed(), tree->leaves());
  torch::NoGradGuard ng;  // the router is frozen outside its own phase
  return latent->route(batch.inputs);
}

torch::Tensor GoeModel::random_leaf(const std::string& split, const torch::Tensor& indices) const {
  const auto idx = indices.to(torch::kCPU).contiguous();
  auto out = torch::empty_like(idx);
  const std::uint64_t base = mix64(host_.seed() ^ text_hash(split));
  for (std::int64_t i = 0; i < idx.numel(); ++i)
    out.data_ptr<std::int64_t>()[i] = static_cast<std::int64_t>(
        mix64(base ^ static_cast<std::uint64_t>(idx.data_ptr<std::int64_t>()[i])) % static_cast<std::uint64_t>(tree->leaves()));
  return out.to(indices.device());
}

Output GoeModel::forward(const Batch& batch) {
  Output out;
  if (phase_ == "router") {
    // No task prediction while the router trains: the phase's task columns read NaN.
    out.prediction = torch::full({batch.inputs.size(0), spec_.num_classes}, std::numeric_limits<float>::quiet_NaN(),
                                 batch.inputs.options());
    return out;
  }
  const auto leaf = route(batch);
  out.prediction = tree->forward(batch.inputs, leaf);
  out.aux["leaf"] = leaf;
  return out;
}

Losses GoeModel::loss(const Batch& batch, const Output& output) {
  if (phase_ == "router") return {{"task", torch::full({}, std::numeric_limits<double>::quiet_NaN())}};
  return {{"task", torch::cross_entropy_loss(output.prediction, batch.targets)}};
}

torch::Tensor GoeModel::correct(const Batch& batch, const Output& output) {
  if (phase_ == "router") return torch::full({batch.inputs.size(0)}, std::numeric_limits<float>::quiet_NaN());
  return output.prediction.argmax(1).eq(batch.targets).to(torch::kFloat);
}

Losses GoeModel::train_step(const Batch& batch, StepContext& ctx) {
  if (phase_ != "router") return Model::train_step(batch, ctx);
  const auto t0 = std::chrono::steady_clock::now();
  auto& vq = *latent->vqvae;
  const auto q = vq.quantize(vq.encode(batch.inputs));
  const auto recon = vq.decode(q.z_q);
  Losses losses{{"recon", torch::mse_loss(recon, batch.inputs)}, {"vq", q.loss}};
  ctx.optimize(losses);
  torch::NoGradGuard ng;
  latent->train_seconds.add_(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  latent->train_updates.add_(1);
  return losses;
}

std::vector<Phase> GoeModel::phases() const {
  if (!latent) return {Phase("train")};
  if (o_.share_router && !shared_asked_) {
    std::ostringstream extra;
    extra << "vq = " << o_.vq_hidden << "," << o_.vq_res_hidden << "," << o_.vq_res_layers << "," << o_.vq_codes << ","
          << o_.vq_code_dim << "," << o_.vq_beta << "\nkmeans = " << o_.kmeans_restarts << "," << o_.kmeans_iterations
          << "\npath_order = " << o_.path_order << "\nleaves = " << tree->leaves() << "\nphase = "
          << router_phase_defaults(spec_);
    shared_ = host_.share("goe_router", {"dataset", "train"}, extra.str());
    shared_asked_ = true;
  }
  Phase router("router", shared_ && shared_->ready() ? 0 : -1);
  router.defaults = router_phase_defaults(spec_);
  return {router, Phase("train")};
}

void GoeModel::begin_phase(const Phase& phase) {
  phase_ = phase.name;
  if (phase.name == "router" && shared_ && shared_->ready()) load_shared_router();
}

std::vector<ParamGroup> GoeModel::param_groups(const std::string& phase) {
  if (phase == "router") return {ParamGroup{"router", latent->parameters(), {}, {}}};
  return {ParamGroup{"modules", tree->parameters(), {}, {}}};
}

void GoeModel::begin_epoch(const EpochContext& ctx) {
  if (ctx.phase != "train" || !latent || latent->fitted()) return;
  fit_clusters(*ctx.train);
  if (shared_ && !shared_->ready()) publish_router();
}

void GoeModel::fit_clusters(const Split& train) {
  if (train.size() < tree->leaves())
    throw DataError("goe: the latent router clusters the training split into " + std::to_string(tree->leaves()) +
                    " clusters (one per leaf), but it holds " + std::to_string(train.size()) + " examples");
  torch::NoGradGuard ng;
  const bool was_training = is_training();
  latent->eval();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> parts;
  const auto dev = latent->centres.device();
  for (std::int64_t lo = 0; lo < train.size(); lo += 1024) {
    const auto idx = torch::arange(lo, std::min(lo + 1024, train.size()), torch::kLong);
    parts.push_back(latent->vqvae->embed(train.get(idx).inputs.to(dev)).to(torch::kCPU));
  }
  const auto emb = torch::cat(parts);
  const auto km = kmeans(emb, tree->leaves(), o_.kmeans_restarts, o_.kmeans_iterations, host_.seed());
  const auto leaf = balanced_leaves(km.centres, 42, o_.path_order == "reference");
  latent->set_clusters(km.centres.to(dev), leaf.to(dev));
  latent->kmeans_seconds.fill_(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const auto sizes = torch::bincount(km.labels, {}, tree->leaves()).contiguous();
  std::ostringstream msg;
  msg << "router: k-means on " << emb.size(0) << " embeddings of " << emb.size(1) << " dimensions, inertia "
      << km.inertia << ", cluster sizes";
  for (std::int64_t c = 0; c < sizes.numel(); ++c)
    msg << (c ? ", " : " ") << sizes.data_ptr<std::int64_t>()[c] << " (leaf " << leaf[c].item<std::int64_t>() << ")";
  host_.log(msg.str());
  latent->train(was_training);
}

void GoeModel::publish_router() {
  torch::serialize::OutputArchive ar;
  latent->save(ar);
  ar.save_to(shared_->path());
  shared_->publish();
  host_.log("router: saved for the other runs of this folder as " + shared_->path());
}

void GoeModel::load_shared_router() {
  torch::serialize::InputArchive ar;
  ar.load_from(shared_->path(), latent->centres.device());
  latent->load(ar);
  latent->reused.fill_(true);
  std::ostringstream msg;
  msg << "router: reused " << shared_->path() << " (" << latent->train_updates.item<std::int64_t>() << " updates, "
      << latent->train_seconds.item<double>() << " s)";
  host_.log(msg.str());
}

void GoeModel::eval_begin(const std::string&) {
  const auto dev = tree->fc_out->weight.device();
  leaf_counts_ = torch::zeros({tree->leaves()}, torch::TensorOptions(dev).dtype(torch::kLong));
  routing_vs_group_ = torch::zeros({tree->leaves(), static_cast<std::int64_t>(spec_.group_names.size())},
                                   torch::TensorOptions(dev).dtype(torch::kLong));
  reconstructions_ = torch::Tensor();
}

void GoeModel::eval_batch(const std::string& split, const Batch& batch, const Output& output, MetricSet& metrics) {
  const double rows = static_cast<double>(batch.inputs.size(0));
  if (latent) {
    auto& vq = *latent->vqvae;
    const auto q = vq.quantize(vq.encode(batch.inputs));
    const auto recon = vq.decode(q.z_q);
    metrics.add("vq_recon", torch::mse_loss(recon, batch.inputs).item<double>(), rows);
    metrics.add("vq_loss", q.loss.item<double>(), rows);
    metrics.add("vq_perplexity", q.perplexity.item<double>(), rows);
    if (!reconstructions_.defined() && o_.reconstructions > 0) {
      const auto n = std::min<std::int64_t>(o_.reconstructions, batch.inputs.size(0));
      reconstructions_ = torch::stack({batch.inputs.narrow(0, 0, n), recon.narrow(0, 0, n)}, 1).to(torch::kCPU);
    }
  }
  if (phase_ == "router" || !routed()) return;
  const auto leaf = output.aux.at("leaf");
  leaf_counts_ += torch::bincount(leaf, {}, tree->leaves());
  if (batch.groups.defined() && routing_vs_group_.size(1) > 0) {
    const auto groups = batch.groups.clamp(0, routing_vs_group_.size(1) - 1);
    routing_vs_group_.view({-1}).index_add_(0, leaf * routing_vs_group_.size(1) + groups, torch::ones_like(leaf));
  }
  if (o_.random_routing_eval) {
    const auto pred = tree->forward(batch.inputs, random_leaf(split, batch.indices));
    metrics.add("random_routing_accuracy", pred.argmax(1).eq(batch.targets).to(torch::kDouble).mean().item<double>(), rows);
  }
}

void GoeModel::eval_end(const std::string& split, MetricSet& metrics, Recorder& recorder) {
  if (reconstructions_.defined())
    recorder.tensor("router/reconstructions/" + split, reconstructions_, {"example", "kind", "channel", "y", "x"});
  if (phase_ == "router" || !routed()) return;
  recorder.tensor("routing/" + split + "/leaf_counts", leaf_counts_.to(torch::kCPU), {"leaf"});
  if (routing_vs_group_.size(1) == 0) return;
  const auto table = routing_vs_group_.to(torch::kCPU, torch::kDouble);
  recorder.table(split + "/routing_vs_group", table, leaf_paths(tree->leaves()), spec_.group_names);
  // Purity: the share of examples on their group's most common leaf (1 = the groups are separated).
  const double total = table.sum().item<double>();
  if (total > 0) metrics.set("routing_purity", std::get<0>(table.max(0)).sum().item<double>() / total);
}

void GoeModel::record(Recorder& recorder) {
  const auto macs = macs_per_sample(), router_macs = router_macs_per_sample();
  std::int64_t router_params = 0;
  if (latent)
    for (const auto& p : latent->parameters()) router_params += p.numel();
  const double train_s = latent ? latent->train_seconds.item<double>() : 0.0;
  const double updates = latent ? static_cast<double>(latent->train_updates.item<std::int64_t>()) : 0.0;
  const double kmeans_s = latent ? latent->kmeans_seconds.item<double>() : 0.0;
  const auto values = torch::tensor({static_cast<double>(num_parameters()), static_cast<double>(router_params),
                                     static_cast<double>(macs), static_cast<double>(router_macs),
                                     static_cast<double>(macs + router_macs), train_s, updates, kmeans_s,
                                     latent && latent->reused.item<bool>() ? 1.0 : 0.0},
                                    torch::kDouble)
                          .view({-1, 1});
  recorder.table("cost", values,
                 {"parameters", "router_parameters", "macs", "router_macs", "macs_with_router", "router_train_seconds",
                  "router_train_updates", "kmeans_seconds", "router_reused"},
                 {"value"});
  recorder.note("goe.model", label());
  recorder.note("goe.depth", std::to_string(tree->depth()));
  if (latent && latent->fitted()) {
    recorder.tensor("routing/centres", latent->centres.to(torch::kCPU), {"cluster", "feature"});
    recorder.tensor("routing/leaf_of_cluster", latent->leaf_of_cluster.to(torch::kCPU), {"cluster"});
  }
}

std::map<std::string, std::string> GoeModel::unmaskable_parameters() const {
  std::map<std::string, std::string> out;
  if (!latent) return out;
  for (const auto& p : latent->vqvae->named_parameters())
    if (p.key().rfind("dec", 0) == 0 && p.key().rfind("dec_res", 0) != 0)
      out["latent.vqvae." + p.key()] = "transposed convolution of the router's decoder, which trains the VQ-VAE and never runs in the forward pass";
  return out;
}

}  // namespace modlab::goe
