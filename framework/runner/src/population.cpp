// Population training (trainer.hpp, execute_population): P runs that differ only in seed (or
// learning rate, weight decay, or a key declared per member) trained as one model. Every member is
// a RunTrainer of its own (dataset, model,
// run file, evaluation, checkpoints, its own random stream); one more copy of the model, the
// driver, runs the training steps on the members' batches laid end to end, with every parameter
// stacked over the members and passed to its layers as a [P, …] override (modlab/population.hpp).
#include "run_trainer.hpp"

#include <modlab/nn/layers.hpp>
#include <modlab/population.hpp>
#include <modlab/runner/optimizers.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <iomanip>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <type_traits>

namespace modlab::runner {

namespace {

/// Why a population cannot be trained as one; its members then run one by one.
struct NotBatchable {
  std::string why;
};

// ---------------------------------------------------------------- random streams

/// What a CPU generator draws from: its engine and cached normal samples, copied without
/// serialising them (get_state). The seed it was started from is not swapped: it only answers
/// initial_seed(), and setting it would reseed the engine.
struct RngState {
  at::mt19937 engine;
  c10::optional<float> normal_float;
  c10::optional<double> normal_double;
};

RngState read_rng(at::CPUGeneratorImpl& g) {
  return {g.engine(), g.next_float_normal_sample(), g.next_double_normal_sample()};
}

void write_rng(at::CPUGeneratorImpl& g, const RngState& s) {
  g.set_engine(s.engine);
  g.set_next_float_normal_sample(s.normal_float);
  g.set_next_double_normal_sample(s.normal_double);
}

/// Swaps a member's own CPU random stream in for its lifetime and saves where it left it, so each
/// member draws exactly the numbers its solo run draws.
class RngSwap {
 public:
  explicit RngSwap(RngState& state) : gen_(at::detail::getDefaultCPUGenerator()), state_(state) {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    auto& g = impl();
    outer_ = read_rng(g);
    write_rng(g, state_);
  }
  ~RngSwap() {
    std::lock_guard<std::mutex> lock(gen_.mutex());
    auto& g = impl();
    state_ = read_rng(g);
    write_rng(g, outer_);
  }
  RngSwap(const RngSwap&) = delete;
  RngSwap& operator=(const RngSwap&) = delete;

 private:
  at::CPUGeneratorImpl& impl() { return *static_cast<at::CPUGeneratorImpl*>(gen_.unsafeGetGeneratorImpl()); }
  at::Generator gen_;
  RngState& state_;
  RngState outer_;
};

RngState cpu_rng() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return read_rng(*static_cast<at::CPUGeneratorImpl*>(gen.unsafeGetGeneratorImpl()));
}

torch::Tensor cpu_rng_state() {
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

/// The state of `device`'s own default generator (a CUDA device's Philox seed and offset), which
/// draws on that device consume and the members' CPU streams do not cover; undefined on the CPU.
torch::Tensor device_rng_state(const torch::Device& device) {
  if (!device.is_cuda()) return {};
  auto g = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

// ---------------------------------------------------------------- stacked parameters

/// The members' parameters stacked, [P, …shape] leaves by full name, in the driver's order.
/// Parameters outside modlab::nn layers that no phase trains and that all members hold alike
/// (a known routing table, say) are not stacked: the driver's own copy serves every member.
struct Stack {
  std::vector<std::string> names;
  std::map<std::string, torch::Tensor> by_name;
  std::vector<const void*> linked;  ///< storage of each stacked tensor when the members were linked to it
};

bool all_equal(const std::vector<torch::Tensor>& parts) {
  for (const auto& t : parts)
    if (!t.equal(parts.front())) return false;
  return true;
}

/// Stacks what the members train or hold differently. A parameter no phase trains and that every
/// member holds alike (a known routing table) is not stacked: the driver's copy serves them all.
/// Throws NotBatchable for a parameter to stack that no override can replace.
Stack stack_members(Model& driver, const std::vector<Model*>& members) {
  const auto overridable = modlab::nn::maskable_parameters(driver);
  Stack s;
  torch::NoGradGuard ng;
  for (const auto& p : driver.named_parameters(/*recurse=*/true)) {
    std::vector<torch::Tensor> parts;
    for (auto* m : members) parts.push_back(m->named_parameters(true)[p.key()].detach());
    if (!p.value().requires_grad() && all_equal(parts) && p.value().equal(parts.front())) continue;
    if (std::find(overridable.begin(), overridable.end(), p.key()) == overridable.end())
      throw NotBatchable{"parameter '" + p.key() + "' is trained or differs between members and no override can "
                         "replace it (it is not held by a modlab::nn layer or another Overridable module)"};
    s.names.push_back(p.key());
    s.by_name[p.key()] = torch::stack(parts).set_requires_grad(true);
  }
  return s;
}

/// Makes each member's own parameters its slices of the stack (they share its storage), so that
/// whatever a member does on its own (epoch hooks, evaluation, checkpoints) sees the weights the
/// population's steps wrote, without a copy. Again only when a stacked tensor has moved since (the
/// optimizer moves its parameters into one flat buffer at its first step).
void link_members(Stack& s, const std::vector<Model*>& members) {
  std::vector<const void*> now;
  for (const auto& name : s.names) now.push_back(s.by_name.at(name).data_ptr());
  if (now == s.linked) return;
  torch::NoGradGuard ng;
  for (std::size_t m = 0; m < members.size(); ++m) {
    auto own = members[m]->named_parameters(true);
    for (const auto& name : s.names) own[name].set_data(s.by_name.at(name).detach()[static_cast<std::int64_t>(m)]);
  }
  s.linked = std::move(now);
}

/// The driver's parameter groups with each parameter replaced by its stacked leaf.
std::vector<ParamGroup> stacked_groups(Model& driver, const std::string& phase, const Stack& s) {
  std::map<const void*, std::string> name_of;
  for (const auto& p : driver.named_parameters(true)) name_of[p.value().unsafeGetTensorImpl()] = p.key();
  auto groups = driver.param_groups(phase);
  for (auto& g : groups) {
    std::vector<torch::Tensor> stacked;
    for (const auto& p : g.params) {
      auto it = s.by_name.find(name_of.at(p.unsafeGetTensorImpl()));
      if (it != s.by_name.end()) stacked.push_back(it->second);
      else if (p.requires_grad()) throw Error("population: trained parameter outside the stack");
    }
    g.params = std::move(stacked);
  }
  return groups;
}

/// The driver's buffers by name (copies).
std::map<std::string, torch::Tensor> buffers_of(Model& driver) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& b : driver.named_buffers(true)) out[b.key()] = b.value().detach().clone();
  return out;
}

/// Why the members' buffers keep them apart ("" when they do not): buffers are not stacked, so
/// every member must hold the driver's (constant tables may; batch statistics differ).
std::string buffer_problem(Model& driver, const std::vector<Model*>& members) {
  for (const auto& b : driver.named_buffers(true))
    for (auto* m : members)
      if (!m->named_buffers(true)[b.key()].equal(b.value()))
        return "buffer '" + b.key() + "' differs between members (buffers are not stacked)";
  return "";
}

// ---------------------------------------------------------------- the folded step

/// Throws NotBatchable unless every term holds one value per member ([P]).
void check_per_member(const Losses& losses, std::int64_t members) {
  for (const auto& t : losses)
    if (t.value.dim() != 1 || t.value.size(0) != members)
      throw NotBatchable{"its loss term '" + t.name + "' is computed over the whole folded batch, not per member " +
                         "(modlab::member_mean)"};
}

/// One value per member of every term: values[m][t], read from the device at once.
std::vector<std::vector<double>> member_values(const Losses& losses, std::int64_t members) {
  check_per_member(losses, members);
  std::vector<std::vector<double>> out(static_cast<std::size_t>(members), std::vector<double>(losses.size()));
  if (losses.empty()) return out;
  std::vector<torch::Tensor> rows;
  for (const auto& t : losses) rows.push_back(t.value.detach());
  const auto all = torch::stack(rows).to(torch::kCPU, torch::kDouble).contiguous();  // [terms, P]
  const auto a = all.accessor<double, 2>();
  for (std::int64_t m = 0; m < members; ++m)
    for (std::size_t t = 0; t < losses.size(); ++t) out[static_cast<std::size_t>(m)][t] = a[static_cast<std::int64_t>(t)][m];
  return out;
}

/// Clips each member's gradient to its own global norm, as clip_grad_norm_ does for a solo run.
void clip_per_member(const std::vector<torch::Tensor>& params, double max_norm, std::int64_t members) {
  torch::NoGradGuard ng;
  torch::Tensor sq;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    const auto s = p.grad().reshape({members, -1}).to(torch::kDouble).pow(2).sum(1);
    sq = sq.defined() ? sq + s : s;
  }
  if (!sq.defined()) return;
  const auto coef = (max_norm / (sq.sqrt() + 1e-6)).clamp_max(1.0);
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    std::vector<std::int64_t> shape(static_cast<std::size_t>(p.dim()), 1);
    shape[0] = members;
    p.grad().mul_(coef.to(p.scalar_type()).view(shape));
  }
}

/// Each optimizer group's learning rate of each member over the driver's: [P] per group, undefined
/// for a group where every member has the driver's rate.
using GroupScales = std::vector<torch::Tensor>;

/// Each member's weight decay in every optimizer group where the members' differ (P values; empty
/// where they agree and the optimizer applies it). `decoupled`: AdamW's p ← p·(1 − lr·wd)
/// rather than L2's g ← g + wd·p.
struct MemberDecays {
  std::vector<std::vector<double>> by_group;
  bool decoupled = false;
};

/// The StepContext of a population's step: one optimizer over the stacked parameters; per-member
/// clipping; each member's learning rate as a factor on its slice of the step.
class PopulationCtx : public StepContext {
 public:
  PopulationCtx(PhaseOptimizer& o, double clip, std::int64_t& step, std::int64_t epoch, GroupScales scales,
                const MemberDecays& decays)
      : o_(o), clip_(clip), step_(step), epoch_(epoch), scales_(std::move(scales)), decays_(decays) {}
  void zero_grad() override {
    if (o_.opt) modlab::runner::zero_grad(*o_.opt);
  }
  void apply() override {
    if (!o_.opt) return;
    const auto members = population_members();
    if (clip_ > 0) clip_per_member(o_.params, clip_, members);
    o_.warm_up(step_);
    std::vector<std::vector<torch::Tensor>> before(scales_.size());
    for (std::size_t g = 0; g < scales_.size(); ++g)
      if (scales_[g].defined())
        for (const auto& p : o_.opt->param_groups()[g].params()) before[g].push_back(p.detach().clone());
    decay(members);
    o_.opt->step();
    for (std::size_t g = 0; g < scales_.size(); ++g)
      if (scales_[g].defined()) rescale(o_.opt->param_groups()[g].params(), before[g], scales_[g], members);
    ++step_;
  }
  void optimize(const Losses& losses) override {
    zero_grad();
    check_per_member(losses, population_members());  // before any update
    auto t = total(losses);
    if (t.requires_grad()) t.sum().backward();
    apply();
  }
  std::int64_t step() const override { return step_; }
  std::int64_t epoch() const override { return epoch_; }

 private:
  /// p ← p_before + s_m·(p_after − p_before) on member m's slice: every optimizer here steps
  /// p ← p − lr·u with u and its state independent of lr, so this is the step at lr·s_m.
  static void rescale(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& before,
                      const torch::Tensor& scale, std::int64_t members) {
    torch::NoGradGuard ng;
    for (std::size_t i = 0; i < before.size(); ++i) {
      auto p = params[i].detach().view({members, -1});
      p.copy_(torch::lerp(before[i].view({members, -1}), p, scale.to(p.scalar_type()).view({-1, 1})));
    }
  }

  /// Each member's own weight decay where the members' differ (the optimizer's is 0 there), on its
  /// slice, as the optimizer would apply it: into the gradient (L2) or, for AdamW, on the weights at
  /// the group's rate (before the rate rescale, which scales it with the rest of the step).
  void decay(std::int64_t members) {
    torch::NoGradGuard ng;
    auto& groups = o_.opt->param_groups();
    for (std::size_t g = 0; g < decays_.by_group.size(); ++g) {
      const auto& wd = decays_.by_group[g];
      if (wd.empty()) continue;
      const double lr = groups[g].options().get_lr();
      for (auto& p : groups[g].params()) {
        if (!p.grad().defined()) continue;
        const auto w = p.detach().view({members, -1});
        const auto grad = p.grad().view({members, -1});
        for (std::int64_t m = 0; m < members; ++m) {
          const double d = wd[static_cast<std::size_t>(m)];
          if (d == 0.0) continue;
          if (decays_.decoupled) w[m].mul_(1 - lr * d);
          else grad[m].add_(w[m], d);
        }
      }
    }
  }

  PhaseOptimizer& o_;
  double clip_;
  std::int64_t& step_;
  std::int64_t epoch_;
  GroupScales scales_;
  const MemberDecays& decays_;
};

/// The members' batches laid end to end: member m owns rows m·B … m·B + B − 1.
Batch fold(const std::vector<Batch>& parts) {
  auto cat = [&](torch::Tensor Batch::*field) {
    if (!(parts.front().*field).defined()) return torch::Tensor();
    std::vector<torch::Tensor> ts;
    for (const auto& b : parts) ts.push_back(b.*field);
    return torch::cat(ts);
  };
  Batch out;
  for (auto field : {&Batch::inputs, &Batch::targets, &Batch::groups, &Batch::lengths, &Batch::target_lengths,
                     &Batch::indices, &Batch::subtask_targets})
    out.*field = cat(field);
  return out;
}

// ---------------------------------------------------------------- optimizer state per member

/// Member `m`'s slice of one parameter's optimizer state, as its solo optimizer would hold it.
std::unique_ptr<torch::optim::OptimizerParamState> slice_state(torch::optim::OptimizerParamState& s, std::int64_t m) {
  namespace optim = torch::optim;
  auto pick = [m](const torch::Tensor& t) { return t.defined() ? t[m].clone() : t; };
  auto adam = [&](auto* a) {  // Adam and AdamW keep the same state under two types
    auto o = std::make_unique<std::remove_pointer_t<decltype(a)>>();
    o->step(a->step()).exp_avg(pick(a->exp_avg())).exp_avg_sq(pick(a->exp_avg_sq())).max_exp_avg_sq(pick(a->max_exp_avg_sq()));
    return std::unique_ptr<optim::OptimizerParamState>(std::move(o));
  };
  if (auto* a = dynamic_cast<optim::AdamParamState*>(&s)) return adam(a);
  if (auto* a = dynamic_cast<optim::AdamWParamState*>(&s)) return adam(a);
  if (auto* r = dynamic_cast<optim::RMSpropParamState*>(&s)) {
    auto o = std::make_unique<optim::RMSpropParamState>();
    o->step(r->step()).square_avg(pick(r->square_avg())).momentum_buffer(pick(r->momentum_buffer())).grad_avg(pick(r->grad_avg()));
    return o;
  }
  if (auto* g = dynamic_cast<optim::SGDParamState*>(&s)) {
    auto o = std::make_unique<optim::SGDParamState>();
    o->momentum_buffer(pick(g->momentum_buffer()));
    return o;
  }
  throw Error("population: an optimizer state of unknown type");
}

/// A solo optimizer over member `m`'s own parameters holding its slice of the stacked state: what
/// the member's checkpoint saves, so that it resumes exactly as a solo run.
PhaseOptimizer member_optimizer(const PhaseOptimizer& stacked, const Stack& stack, const TrainOptions& opt,
                                Model& member, const std::string& phase, std::int64_t m) {
  PhaseOptimizer solo = build_optimizer(opt, member.param_groups(phase));
  if (!solo.opt || !stacked.opt) return solo;
  std::map<const void*, std::string> name_of;
  for (const auto& p : member.named_parameters(true)) name_of[p.value().unsafeGetTensorImpl()] = p.key();
  auto& from = stacked.opt->state();
  auto& to = solo.opt->state();
  for (const auto& p : solo.params) {
    const auto s = stack.by_name.find(name_of.at(p.unsafeGetTensorImpl()));
    if (s == stack.by_name.end()) continue;
    const auto it = from.find(state_key(s->second));
    if (it != from.end()) to[state_key(p)] = slice_state(*it->second, m);
  }
  return solo;
}

}  // namespace

namespace {

/// A numeric model option of `model` (its table in a run's config): its value there, else the
/// declared default.
double option_value(const KeySpec& k, const Config& model) {
  const bool set = model.has(k.name);
  switch (k.type) {
    case ValueType::Bool: return set ? model.get<bool>(k.name) : k.default_value == "true";
    case ValueType::Int: return static_cast<double>(set ? model.get<std::int64_t>(k.name) : std::stoll(k.default_value));
    default: return set ? model.get<double>(k.name) : std::stod(k.default_value);
  }
}

/// The numeric model options declared per member (KeySpec::per_member) in which the members
/// differ, one value per member: what the driver's forward reads through member_option.
std::map<std::string, std::vector<double>> differing_options(const Registry& registry, const std::vector<RunRequest>& requests) {
  std::map<std::string, std::vector<double>> out;
  const auto plugin = Config(requests.front().config, "").sub("model").get<std::string>("plugin");
  for (const auto& k : registry.model(plugin).keys) {
    if (!k.per_member || (k.type != ValueType::Float && k.type != ValueType::Int && k.type != ValueType::Bool)) continue;
    std::vector<double> values;
    for (const auto& r : requests) values.push_back(option_value(k, Config(r.config, "").sub("model")));
    if (std::any_of(values.begin(), values.end(), [&](double v) { return v != values.front(); })) out[k.name] = values;
  }
  return out;
}

class Population {
 public:
  Population(const Registry& registry, const std::vector<RunRequest>& requests)
      : requests_(requests), options_(differing_options(registry, requests)) {
    for (const auto& r : requests) {
      members_.push_back(std::make_unique<RunTrainer>(registry, r));  // seeds the global generator
      members_.back()->build();
      rng_.push_back(cpu_rng());
      models_.push_back(&members_.back()->model());
      active_.push_back(true);
    }
    driver_ = members_.front()->build_driver();
    check();
  }

  std::vector<RunOutcome> run() {
    std::vector<RunOutcome> out(members_.size());
    try {
      for (std::size_t m = 0; m < members_.size(); ++m) members_[m]->resume_or_start();
      for (auto& t : members_) t->writer().note("population", std::to_string(members_.size()));
      const auto phases = driver_->phases();
      const auto nphases = static_cast<std::int64_t>(phases.size());
      for (std::int64_t pi = 0; pi < nphases; ++pi) run_phase(phases, pi, nphases);
      for (std::size_t m = 0; m < members_.size(); ++m)
        if (active_[m]) member(m, [&] { members_[m]->finish(); });
      for (std::size_t m = 0; m < members_.size(); ++m)
        if (active_[m]) out[m] = RunOutcome{RunStatus::Completed, ""};
        else out[m] = failures_[m];
    } catch (const Interrupted&) {
      for (std::size_t m = 0; m < members_.size(); ++m)
        if (active_[m]) {
          members_[m]->writer().finish("interrupted", "interrupted by the user");
          out[m] = RunOutcome{RunStatus::Interrupted, "interrupted"};
        } else out[m] = failures_[m];
    } catch (const std::exception& e) {
      for (std::size_t m = 0; m < members_.size(); ++m) out[m] = active_[m] ? members_[m]->fail(first_line_of(e)) : failures_[m];
    }
    return out;
  }

 private:
  /// Runs `f` with member m's random stream; a member failing alone is recorded and set aside.
  template <class F>
  void member(std::size_t m, F f) {
    RngSwap swap(rng_[m]);
    f();
  }

  void fail_member(std::size_t m, const std::exception& e) {
    failures_[m] = members_[m]->fail(first_line_of(e));
    active_[m] = false;
    members_[m]->log(std::string("failed alone in its population: ") + e.what());
  }

  /// Throws NotBatchable unless the members can train as one.
  void check() {
    if (auto why = buffer_problem(*driver_, models_); !why.empty()) throw NotBatchable{why};
    for (const auto& t : members_)
      if (t->resumed() || run_state(t->request().out_dir, t->request().run_id) != "")
        throw NotBatchable{"run " + t->request().run_id + " has a checkpoint or run file: it resumes on its own"};
    const auto phases = driver_->phases();
    for (std::size_t pi = 0; pi < phases.size(); ++pi) {
      const auto s0 = members_[0]->setup(phases, static_cast<std::int64_t>(pi));
      for (auto& t : members_) {
        const auto s = t->setup(phases, static_cast<std::int64_t>(pi));
        if (s.train->size() != s0.train->size() || s.opt.batch_size != s0.opt.batch_size || s.epochs != s0.epochs)
          throw NotBatchable{"its members' training splits, batch sizes or epochs differ"};
      }
    }
    probe(phases);
  }

  /// One folded step on copies of the members' streams, before anything is written: the loss terms
  /// must come back per member and the forward must draw no random numbers.
  void probe(const std::vector<Phase>& phases) {
    struct Probe : StepContext {
      torch::Tensor rng, device_rng;
      torch::Device device = torch::kCPU;
      std::int64_t members = 0;
      bool done = false;
      void zero_grad() override {}
      void apply() override { throw NotBatchable{"its training step updates without optimize()"}; }
      void optimize(const Losses& losses) override {
        check_per_member(losses, members);
        if (!cpu_rng_state().equal(rng) || (device_rng.defined() && !device_rng_state(device).equal(device_rng)))
          throw NotBatchable{"its training forward draws random numbers"};
        done = true;
      }
      std::int64_t step() const override { return 0; }
      std::int64_t epoch() const override { return 0; }
    } ctx;
    ctx.members = static_cast<std::int64_t>(members_.size());
    ctx.rng = cpu_rng_state();
    ctx.device = requests_[0].device;
    ctx.device_rng = device_rng_state(ctx.device);
    const auto buffers = buffers_of(*driver_);
    try {
      folded_step(phases, first_step(phases, members_.size()), ctx);
    } catch (const NotBatchable&) {
      throw;
    } catch (const std::exception& e) {
      throw NotBatchable{std::string("its training step failed on a folded batch: ") + first_line_of(e)};
    }
    if (!ctx.done) throw NotBatchable{"its training step did not call optimize()"};
    for (const auto& [name, before] : buffers_of(*driver_))
      if (!before.equal(buffers.at(name)))
        throw NotBatchable{"its training step updates buffer '" + name + "' (batch statistics), which is not stacked"};
  }

  /// The first training batches of the first `k` members, folded, and their parameters stacked:
  /// copies (nothing of the members changes), drawn from copies of their random streams.
  struct FirstStep {
    Batch batch;
    Stack stack;
    std::int64_t members;
  };
  FirstStep first_step(const std::vector<Phase>& phases, std::size_t k) {
    auto saved = rng_;
    std::vector<Batch> parts;
    for (std::size_t m = 0; m < k; ++m) {
      RngSwap swap(saved[m]);
      const auto ps = members_[m]->setup(phases, 0);
      parts.push_back(ps.train->get(epoch_batches(*ps.train, ps.opt, 0).front(), true).to(members_[m]->request().device));
    }
    return {fold(parts), stack_members(*driver_, std::vector<Model*>(models_.begin(), models_.begin() + static_cast<std::ptrdiff_t>(k))),
            static_cast<std::int64_t>(k)};
  }

  /// The driver's training step on `first`; `ctx` decides what optimize() does.
  void folded_step(const std::vector<Phase>& phases, const FirstStep& first, StepContext& ctx) {
    const auto s = members_[0]->setup(phases, 0);
    driver_->begin_phase(*s.phase);
    driver_->begin_epoch(EpochContext{s.phase->name, 0, s.epochs, 0, s.train.get()});
    driver_->train();
    modlab::nn::OverrideScope scope(*driver_, first.stack.by_name);
    auto options = options_;
    for (auto& [key, values] : options) values.resize(static_cast<std::size_t>(first.members));
    PopulationScope ps(first.members, options);
    driver_->train_step(first.batch, ctx);
  }

 public:
  /// "auto": the largest population, 1, 2, 4, … or all members, whose folded training step
  /// (forward and backward, timed on the first batches, best of 3) takes at most
  /// kAutoStepFactor times one member's step. Says what it measured in every member's log.
  std::size_t measured_size() {
    struct Timing : StepContext {
      void zero_grad() override {}
      void apply() override {}
      void optimize(const Losses& losses) override {
        auto t = total(losses);
        if (t.requires_grad()) t.sum().backward();
      }
      std::int64_t step() const override { return 0; }
      std::int64_t epoch() const override { return 0; }
    } ctx;
    const auto phases = driver_->phases();
    auto seconds = [&](std::size_t k) {
      const auto first = first_step(phases, k);
      double best = 1e300;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        folded_step(phases, first, ctx);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      return best;
    };
    const double one = seconds(1);
    std::size_t chosen = 1;
    std::string measured = "1: " + milliseconds(one);
    const std::size_t n = members_.size();
    for (std::size_t k = 2; k <= n; k = k < n && 2 * k > n ? n : 2 * k) {  // 2, 4, …, then n itself
      const double t = seconds(k);
      measured += ", " + std::to_string(k) + ": " + milliseconds(t);
      if (t > kAutoStepFactor * one) break;
      chosen = k;
    }
    for (const auto& r : requests_)
      if (r.logger) r.logger("population \"auto\": folded step time by size (" + measured + ") → " + std::to_string(chosen) +
                             " members at a time");
    return chosen;
  }

  static constexpr double kAutoStepFactor = 4.0;

 private:
  static std::string milliseconds(double s) {
    std::ostringstream o;
    o << std::setprecision(3) << s * 1e3 << " ms";
    return o.str();
  }

  void run_phase(const std::vector<Phase>& phases, std::int64_t pi, std::int64_t nphases) {
    std::vector<PhaseSetup> setups;
    for (auto& t : members_) setups.push_back(t->setup(phases, pi));
    const PhaseSetup& s0 = setups.front();
    for (std::size_t m = 0; m < members_.size(); ++m) member(m, [&] { models_[m]->begin_phase(*setups[m].phase); });
    driver_->begin_phase(*s0.phase);
    stack_ = stack_members(*driver_, models_);  // a phase may change the members' weights
    PhaseOptimizer bo = build_optimizer(s0.opt, stacked_groups(*driver_, s0.phase->name, stack_));
    link_members(stack_, models_);
    auto own = member_optimizers(setups, s0.phase->name);
    const auto decays = member_decays(bo, own, s0.opt.optimizer == "adamw");
    for (std::int64_t ep = 0; ep < s0.epochs; ++ep) {
      const auto t0 = std::chrono::steady_clock::now();
      bo.schedule(s0.opt, ep);
      const auto scales = group_scales(bo, own, setups, ep);
      for (std::size_t m = 0; m < members_.size(); ++m)
        if (active_[m]) member(m, [&] { members_[m]->begin_epoch(setups[m], ep); });
      driver_->begin_epoch(EpochContext{s0.phase->name, ep, s0.epochs, members_[0]->position().global_epoch, s0.train.get()});
      driver_->train();
      auto losses = train_epoch(setups, bo, ep, scales, decays);
      link_members(stack_, models_);
      for (std::size_t m = 0; m < members_.size(); ++m) {
        if (!active_[m]) continue;
        const double lr = bo.opt ? bo.lr() * (scales.empty() || !scales[0].defined() ? 1.0 : scales[0][static_cast<std::int64_t>(m)].item<double>())
                                 : std::nan("");
        std::optional<PhaseOptimizer> solo;
        auto optimizer = [&]() -> torch::optim::Optimizer* {
          solo.emplace(member_optimizer(bo, stack_, setups[m].opt, *models_[m], s0.phase->name, static_cast<std::int64_t>(m)));
          return solo->opt.get();
        };
        try {
          member(m, [&] { members_[m]->close_epoch(setups[m], ep, losses[m], lr, t0, nphases, optimizer); });
        } catch (const Interrupted&) {
          throw;
        } catch (const std::exception& e) {
          fail_member(m, e);
        }
      }
    }
    for (auto& t : members_) t->end_phase(s0);
  }

  /// Each member's own optimizer of the phase (never stepped): its groups' rates and schedule.
  std::vector<PhaseOptimizer> member_optimizers(const std::vector<PhaseSetup>& setups, const std::string& phase) {
    std::vector<PhaseOptimizer> own;
    for (std::size_t m = 0; m < members_.size(); ++m) own.push_back(build_optimizer(setups[m].opt, models_[m]->param_groups(phase)));
    return own;
  }

  /// Each member's rate over the driver's in every optimizer group at epoch `ep` of the schedule.
  static GroupScales group_scales(const PhaseOptimizer& bo, std::vector<PhaseOptimizer>& own,
                                  const std::vector<PhaseSetup>& setups, std::int64_t ep) {
    for (std::size_t m = 0; m < own.size(); ++m) own[m].schedule(setups[m].opt, ep);
    GroupScales out(bo.epoch_lr.size());
    for (std::size_t g = 0; g < bo.epoch_lr.size(); ++g) {
      std::vector<double> scale;
      bool differ = false;
      for (std::size_t m = 0; m < own.size(); ++m) {
        const double mine = own[m].epoch_lr.at(g), driver = bo.epoch_lr[g];
        scale.push_back(mine == driver ? 1.0 : mine / driver);
        differ = differ || scale.back() != 1.0;
      }
      if (differ) out[g] = torch::tensor(scale, torch::kDouble);
    }
    return out;
  }

  /// The members' weight decays per optimizer group where they differ; the driver's optimizer
  /// then applies none there (PopulationCtx::decay does, per member).
  static MemberDecays member_decays(PhaseOptimizer& bo, const std::vector<PhaseOptimizer>& own, bool decoupled) {
    MemberDecays out;
    out.decoupled = decoupled;
    out.by_group.resize(bo.weight_decay.size());
    for (std::size_t g = 0; g < bo.weight_decay.size(); ++g) {
      std::vector<double> wd;
      for (const auto& o : own) wd.push_back(o.weight_decay.at(g));
      if (std::all_of(wd.begin(), wd.end(), [&](double d) { return d == wd.front(); })) continue;
      out.by_group[g] = wd;
      set_weight_decay(bo.opt->param_groups()[g].options(), 0.0);
    }
    return out;
  }

  static void set_weight_decay(torch::optim::OptimizerOptions& o, double wd) {
    namespace optim = torch::optim;
    if (auto* a = dynamic_cast<optim::AdamOptions*>(&o)) a->weight_decay(wd);
    else if (auto* w = dynamic_cast<optim::AdamWOptions*>(&o)) w->weight_decay(wd);
    else if (auto* r = dynamic_cast<optim::RMSpropOptions*>(&o)) r->weight_decay(wd);
    else if (auto* sgd = dynamic_cast<optim::SGDOptions*>(&o)) sgd->weight_decay(wd);
    else throw std::logic_error("population: an optimizer without weight decay options");
  }

  /// One epoch of folded steps; each member's loss sums. A member whose loss is not finite fails
  /// alone (its rows stay in the batch, its updates touch only its own slice).
  std::vector<EpochLoss> train_epoch(const std::vector<PhaseSetup>& setups, PhaseOptimizer& bo, std::int64_t ep,
                                     const GroupScales& scales, const MemberDecays& decays) {
    const auto P = static_cast<std::int64_t>(members_.size());
    std::vector<std::vector<torch::Tensor>> batches;
    for (std::size_t m = 0; m < members_.size(); ++m)
      batches.push_back(epoch_batches(*setups[m].train, setups[m].opt, members_[m]->batch_seed(setups[m], ep)));
    std::vector<EpochLoss> loss(members_.size());
    std::int64_t& step = members_[0]->position().step;
    PopulationCtx ctx(bo, setups[0].opt.grad_clip, step, ep, scales, decays);
    for (std::size_t b = 0; b < batches[0].size(); ++b) {
      if (requests_[0].stop && requests_[0].stop->load()) throw Interrupted{};
      std::vector<Batch> parts;
      for (std::size_t m = 0; m < members_.size(); ++m)
        member(m, [&] { parts.push_back(setups[m].train->get(batches[m][b], true).to(requests_[m].device)); });
      const std::int64_t step_index = step;
      Losses losses;
      {
        modlab::nn::OverrideScope scope(*driver_, stack_.by_name);
        PopulationScope ps(P, options_);
        losses = driver_->train_step(fold(parts), ctx);
      }
      add_losses(loss, losses, setups, b, batches, step_index, ep);
    }
    for (std::size_t m = 1; m < members_.size(); ++m) members_[m]->position().step = step;
    return loss;
  }

  void add_losses(std::vector<EpochLoss>& loss, const Losses& losses, const std::vector<PhaseSetup>& setups,
                  std::size_t b, const std::vector<std::vector<torch::Tensor>>& batches, std::int64_t step, std::int64_t ep) {
    const auto values = member_values(losses, static_cast<std::int64_t>(members_.size()));
    for (std::size_t m = 0; m < members_.size(); ++m) {
      if (!active_[m]) continue;
      try {
        RunTrainer::add_batch_values(loss[m], losses, values[m], static_cast<double>(batches[m][b].size(0)), step,
                                     setups[m].phase->name, ep);
      } catch (const NonFiniteLoss& e) {
        fail_member(m, e);
      }
    }
  }

  const std::vector<RunRequest>& requests_;
  const std::map<std::string, std::vector<double>> options_;  ///< per-member options the members differ in
  std::vector<std::unique_ptr<RunTrainer>> members_;
  std::vector<Model*> models_;
  std::vector<RngState> rng_;
  std::vector<bool> active_;
  std::map<std::size_t, RunOutcome> failures_;
  std::shared_ptr<Model> driver_;
  Stack stack_;
};

}  // namespace

namespace {

/// Trains `requests` as one population. When the model cannot, says why in every run log and runs
/// each member alone, or with `alone` false returns nothing (nothing ran).
std::optional<std::vector<RunOutcome>> train_together(const Registry& registry, const std::vector<RunRequest>& requests,
                                                      bool alone) {
  if (requests.size() > 1) {
    try {
      return Population(registry, requests).run();
    } catch (const NotBatchable& n) {
      for (const auto& r : requests)
        if (r.logger)
          r.logger("population of " + std::to_string(requests.size()) + " runs one member at a time: the model " + n.why);
    } catch (const std::exception& e) {
      for (const auto& r : requests)
        if (r.logger) r.logger(std::string("population could not start, its members run one at a time: ") + first_line_of(e));
    }
    if (!alone) return std::nullopt;
  }
  std::vector<RunOutcome> out;
  for (const auto& r : requests) out.push_back(execute_run(registry, r));
  return out;
}

/// Whether the runs asked for `[run] population = "auto"` (stored as 0).
bool auto_size(const std::vector<RunRequest>& requests) {
  const Config root(requests.front().config, "");
  return root.has("run") && root.sub("run").has("population") && root.sub("run").get<std::int64_t>("population") == 0;
}

}  // namespace

std::vector<RunOutcome> execute_population(const Registry& registry, const std::vector<RunRequest>& requests,
                                           bool alone_if_not_batchable) {
  keep_freed_memory();
  for (const auto& r : requests)
    std::filesystem::create_directories(std::filesystem::path(RunPaths::of(r.out_dir, r.run_id).h5).parent_path());
  std::size_t size = requests.size();
  if (requests.size() > 1 && auto_size(requests)) {
    try {
      Population all(registry, requests);
      size = all.measured_size();
      if (size >= requests.size()) return all.run();  // the members built for measuring train as they are
    } catch (const std::exception&) {
      // train_together below says in every run log why they cannot train as one
    }
  }
  std::vector<RunOutcome> out;
  for (std::size_t first = 0; first < requests.size(); first += size) {
    const std::vector<RunRequest> part(requests.begin() + static_cast<std::ptrdiff_t>(first),
                                       requests.begin() + static_cast<std::ptrdiff_t>(std::min(requests.size(), first + size)));
    // Only the first part may hand its runs back: once runs have trained here, the rest stay here.
    auto done = train_together(registry, part, alone_if_not_batchable || first > 0);
    if (!done) return {};
    for (auto& o : *done) out.push_back(std::move(o));
  }
  return out;
}

}  // namespace modlab::runner
