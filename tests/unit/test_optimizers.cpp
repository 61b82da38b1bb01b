// FastAdam / FastRMSprop give bit-identical parameters and state to torch::optim::Adam / RMSprop,
// also when the flat blocks they keep are disturbed (gradients assigned, missing, parameters given
// new storage, state saved and loaded).
#define BOOST_TEST_MODULE optimizers
#include <boost/test/unit_test.hpp>

#include <modlab/runner/optimizers.hpp>

#include <torch/torch.h>
#include <torch/version.h>

#include <functional>
#include <sstream>
#include <memory>

using namespace modlab::runner;

namespace {

std::vector<torch::Tensor> make_params(torch::Dtype dtype) {
  torch::manual_seed(0);
  return {torch::randn({3, 4}, dtype).requires_grad_(), torch::randn({5}, dtype).requires_grad_(),
          torch::randn({2, 2, 3}, dtype).requires_grad_()};
}

using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;
/// Called on each side after the backward pass of step `s`: may change gradients or parameters.
using Disturb = std::function<void(int s, std::vector<torch::Tensor>& params, torch::optim::Optimizer& opt)>;

/// Runs `steps` steps of two optimizers on the same quadratic-ish loss; true if every parameter is
/// bit-identical after each step. Parameter i takes part in the loss of step s unless
/// `skip(s, i)` (then it has no gradient that step, as a parameter a phase does not use).
bool same_trajectory(const Factory& ref, const Factory& fast, torch::Dtype dtype, int steps = 25,
                     const Disturb& disturb = nullptr, const std::function<bool(int, std::size_t)>& skip = nullptr) {
  auto a = make_params(dtype), b = make_params(dtype);
  auto oa = ref(a), ob = fast(b);
  for (int s = 0; s < steps; ++s) {
    for (auto* pair : {&a, &b}) {
      auto* opt = pair == &a ? oa.get() : ob.get();
      zero_grad(*opt);  // FastAdam / FastRMSprop: one zero_ per flat group
      torch::Tensor loss = torch::zeros({}, dtype);
      for (std::size_t i = 0; i < pair->size(); ++i) {
        if (skip && skip(s, i)) continue;
        loss = loss + ((*pair)[i] * (*pair)[i]).sum() * (0.5 + static_cast<double>(i)) + (*pair)[i].sin().sum();
      }
      loss.backward();
      if (disturb) disturb(s, *pair, *opt);
      opt->step();
    }
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!torch::equal(a[i], b[i])) {
        BOOST_TEST_MESSAGE("step " << s << ", parameter " << i << " differs by "
                                   << (a[i] - b[i]).abs().max().item<double>());
        return false;
      }
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fast_adam_is_bit_identical_to_libtorch_adam) {
  for (auto dtype : {torch::kFloat, torch::kDouble})
    for (bool amsgrad : {false, true})
      for (double wd : {0.0, 0.01}) {
        auto opts = torch::optim::AdamOptions(0.01).weight_decay(wd).amsgrad(amsgrad).betas({0.8, 0.95}).eps(1e-6);
        BOOST_TEST(same_trajectory([&](auto p) { return std::make_unique<torch::optim::Adam>(p, opts); },
                                   [&](auto p) { return std::make_unique<FastAdam>(p, opts); }, dtype),
                   "amsgrad " << amsgrad << " wd " << wd << " dtype " << dtype);
      }
}

BOOST_AUTO_TEST_CASE(fast_rmsprop_is_bit_identical_to_libtorch_rmsprop) {
  for (auto dtype : {torch::kFloat, torch::kDouble})
    for (double momentum : {0.0, 0.9})
      for (bool centered : {false, true}) {
        auto opts = torch::optim::RMSpropOptions(0.01).momentum(momentum).centered(centered).weight_decay(0.001);
        BOOST_TEST(same_trajectory([&](auto p) { return std::make_unique<torch::optim::RMSprop>(p, opts); },
                                   [&](auto p) { return std::make_unique<FastRMSprop>(p, opts); }, dtype),
                   "momentum " << momentum << " centered " << centered << " dtype " << dtype);
      }
}

BOOST_AUTO_TEST_CASE(state_saved_by_one_loads_into_the_other) {
  auto p = make_params(torch::kFloat);
  FastAdam fast(p, torch::optim::AdamOptions(0.01));
  for (int s = 0; s < 3; ++s) {
    fast.zero_grad();
    (p[0] * p[0]).sum().backward();
    fast.step();
  }
  std::stringstream buf;
  torch::serialize::OutputArchive out;
  fast.save(out);
  out.save_to(buf);
  torch::optim::Adam plain(p, torch::optim::AdamOptions(0.01));
  torch::serialize::InputArchive in;
  in.load_from(buf);
  plain.load(in);
  const auto& st = static_cast<torch::optim::AdamParamState&>(
      *plain.state().at(state_key(p[0])));
  BOOST_TEST(st.step() == 3);
}

BOOST_AUTO_TEST_CASE(zero_grad_zeroes_in_place_on_every_libtorch) {
  // LibTorch 2's Optimizer::zero_grad sets gradients to none; modlab's keeps them, zeroed.
  auto p = make_params(torch::kFloat);
  torch::optim::SGD opt(p, torch::optim::SGDOptions(0.1).momentum(0.9));
  (p[0].sum() + p[1].sum()).backward();
  const void* before = p[0].grad().data_ptr();
  zero_grad(opt);
  BOOST_TEST_REQUIRE(p[0].grad().defined());
  BOOST_TEST(p[0].grad().data_ptr() == before);
  BOOST_TEST(p[0].grad().abs().sum().item<double>() == 0.0);
  BOOST_TEST(!p[2].grad().defined());  // never had one
}

BOOST_AUTO_TEST_CASE(a_group_is_updated_in_one_flat_buffer_and_keeps_its_tensors) {
  auto p = make_params(torch::kFloat);
  const std::vector<const void*> impls = {p[0].unsafeGetTensorImpl(), p[1].unsafeGetTensorImpl(),
                                          p[2].unsafeGetTensorImpl()};
  const auto before = p[1].detach().clone();
  FastRMSprop opt(p, torch::optim::RMSpropOptions(0.01).momentum(0.9));
  opt.zero_grad();
  (p[0].sum() + p[1].sum() + p[2].sum()).backward();
  opt.step();
  for (std::size_t i = 0; i < p.size(); ++i) {
    BOOST_TEST(p[i].unsafeGetTensorImpl() == impls[i]);  // the model's tensors, not copies
    BOOST_TEST(p[i].requires_grad());
    BOOST_TEST(p[i].is_leaf());
  }
  BOOST_TEST(!torch::equal(p[1], before));
  // Values, gradients and state of consecutive parameters are adjacent slices of one buffer.
  auto next_to = [](const torch::Tensor& x, const torch::Tensor& y) {
    return static_cast<const char*>(x.data_ptr()) + x.numel() * 4 == static_cast<const char*>(y.data_ptr());
  };
  BOOST_TEST(next_to(p[0], p[1]));
  BOOST_TEST(next_to(p[1], p[2]));
  BOOST_TEST(next_to(p[0].grad(), p[1].grad()));
  auto& st0 = static_cast<torch::optim::RMSpropParamState&>(*opt.state().at(state_key(p[0])));
  auto& st1 = static_cast<torch::optim::RMSpropParamState&>(*opt.state().at(state_key(p[1])));
  BOOST_TEST(next_to(st0.square_avg(), st1.square_avg()));
  BOOST_TEST(next_to(st0.momentum_buffer(), st1.momentum_buffer()));
  // Both zero_grads work on the slices (LibTorch's detaches gradients in place, refused for views).
  opt.zero_grad();
  BOOST_TEST(p[2].grad().abs().sum().item<double>() == 0.0);
  (p[0].sum() + p[1].sum() + p[2].sum()).backward();
#if TORCH_VERSION_MAJOR >= 2
  static_cast<torch::optim::Optimizer&>(opt).zero_grad(/*set_to_none=*/false);
#else
  static_cast<torch::optim::Optimizer&>(opt).zero_grad();
#endif
  BOOST_TEST(p[2].grad().abs().sum().item<double>() == 0.0);
  BOOST_TEST(next_to(p[1].grad(), p[2].grad()));
}

BOOST_AUTO_TEST_CASE(disturbed_flat_blocks_still_follow_libtorch_exactly) {
  auto adam = torch::optim::AdamOptions(0.01).betas({0.8, 0.95});
  auto rms = torch::optim::RMSpropOptions(0.01).momentum(0.9).centered(true);
  const Factory ref_adam = [&](auto p) { return std::make_unique<torch::optim::Adam>(p, adam); };
  const Factory fast_adam = [&](auto p) { return std::make_unique<FastAdam>(p, adam); };
  const Factory ref_rms = [&](auto p) { return std::make_unique<torch::optim::RMSprop>(p, rms); };
  const Factory fast_rms = [&](auto p) { return std::make_unique<FastRMSprop>(p, rms); };

  // Gradients assigned rather than accumulated (as a custom training step does), every other step.
  const Disturb assign = [](int s, std::vector<torch::Tensor>& p, torch::optim::Optimizer&) {
    if (s % 2 == 1) p[1].mutable_grad() = p[1].grad().clone() * 0.5;
  };
  BOOST_TEST(same_trajectory(ref_adam, fast_adam, torch::kFloat, 12, assign));
  BOOST_TEST(same_trajectory(ref_rms, fast_rms, torch::kFloat, 12, assign));

  // A parameter without gradient on some steps: it misses those updates, its state its steps.
  const auto skip = [](int s, std::size_t i) { return i == 2 && (s == 0 || s == 5 || s == 6); };
  BOOST_TEST(same_trajectory(ref_adam, fast_adam, torch::kFloat, 12, nullptr, skip));
  BOOST_TEST(same_trajectory(ref_rms, fast_rms, torch::kDouble, 12, nullptr, skip));
  const Disturb drop = [](int s, std::vector<torch::Tensor>& p, torch::optim::Optimizer&) {
    if (s == 5) p[2].mutable_grad() = torch::Tensor();  // a gradient set to none mid-run
  };
  BOOST_TEST(same_trajectory(ref_adam, fast_adam, torch::kFloat, 12, drop));
  BOOST_TEST(same_trajectory(ref_rms, fast_rms, torch::kFloat, 12, drop));

  // A parameter given new storage (a checkpoint loaded into the model).
  const Disturb reload = [](int s, std::vector<torch::Tensor>& p, torch::optim::Optimizer&) {
    if (s == 4) {
      torch::NoGradGuard ng;
      p[0].set_data(p[0].detach().clone());
    }
  };
  BOOST_TEST(same_trajectory(ref_adam, fast_adam, torch::kFloat, 12, reload));

  // State saved and loaded back mid-run (a resumed run).
  const Disturb save_load = [](int s, std::vector<torch::Tensor>&, torch::optim::Optimizer& opt) {
    if (s != 6) return;
    std::stringstream buf;
    torch::serialize::OutputArchive out;
    opt.save(out);
    out.save_to(buf);
    torch::serialize::InputArchive in;
    in.load_from(buf);
    opt.load(in);
  };
  BOOST_TEST(same_trajectory(ref_adam, fast_adam, torch::kFloat, 12, save_load));
  BOOST_TEST(same_trajectory(ref_rms, fast_rms, torch::kFloat, 12, save_load));
}

BOOST_AUTO_TEST_CASE(groups_with_equal_options_share_a_block_and_split_when_they_differ) {
  // Two groups ("gate", "experts"): one block while their options are equal, two once group 1's
  // learning rate changes, one again when it is changed back; the trajectory stays LibTorch's.
  auto groups_of = [](std::vector<torch::Tensor> p, double lr) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<torch::Tensor>{p[0], p[1]}, std::make_unique<torch::optim::AdamOptions>(lr));
    g.emplace_back(std::vector<torch::Tensor>{p[2]}, std::make_unique<torch::optim::AdamOptions>(lr));
    return g;
  };
  const Factory ref = [&](auto p) {
    return std::make_unique<torch::optim::Adam>(groups_of(p, 0.01), torch::optim::AdamOptions(0.01));
  };
  const Factory fast = [&](auto p) { return std::make_unique<FastAdam>(groups_of(p, 0.01), torch::optim::AdamOptions(0.01)); };
  const Disturb lr = [](int s, std::vector<torch::Tensor>&, torch::optim::Optimizer& opt) {
    if (s == 5) opt.param_groups()[1].options().set_lr(0.03);
    if (s == 9) opt.param_groups()[1].options().set_lr(0.01);
  };
  BOOST_TEST(same_trajectory(ref, fast, torch::kFloat, 14, lr));

  auto p = make_params(torch::kFloat);
  FastAdam opt(groups_of(p, 0.01), torch::optim::AdamOptions(0.01));
  auto step = [&] {
    zero_grad(opt);
    (p[0].sum() + p[1].sum() + p[2].sum()).backward();
    opt.step();
  };
  auto next_to = [](const torch::Tensor& x, const torch::Tensor& y) {
    return static_cast<const char*>(x.data_ptr()) + x.numel() * 4 == static_cast<const char*>(y.data_ptr());
  };
  step();
  BOOST_TEST(next_to(p[1], p[2]));  // across the two groups: one block
  opt.param_groups()[1].options().set_lr(0.02);
  step();
  BOOST_TEST(!next_to(p[1], p[2]));  // two blocks
  BOOST_TEST(next_to(p[0], p[1]));
}
