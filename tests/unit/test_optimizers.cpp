// FastAdam / FastRMSprop give bit-identical parameters and state to torch::optim::Adam / RMSprop.
#define BOOST_TEST_MODULE optimizers
#include <boost/test/unit_test.hpp>

#include <modlab/runner/optimizers.hpp>

#include <torch/torch.h>

#include <functional>
#include <memory>

using namespace modlab::runner;

namespace {

std::vector<torch::Tensor> make_params(torch::Dtype dtype) {
  torch::manual_seed(0);
  return {torch::randn({3, 4}, dtype).requires_grad_(), torch::randn({5}, dtype).requires_grad_(),
          torch::randn({2, 2, 3}, dtype).requires_grad_()};
}

/// Runs `steps` steps of two optimizers on the same quadratic-ish loss; true if every parameter is
/// bit-identical after each step.
bool same_trajectory(const std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& ref,
                     const std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& fast,
                     torch::Dtype dtype, int steps = 25) {
  auto a = make_params(dtype), b = make_params(dtype);
  auto oa = ref(a), ob = fast(b);
  for (int s = 0; s < steps; ++s) {
    for (auto* pair : {&a, &b}) {
      auto* opt = pair == &a ? oa.get() : ob.get();
      opt->zero_grad();
      torch::Tensor loss = torch::zeros({}, dtype);
      for (std::size_t i = 0; i < pair->size(); ++i)
        loss = loss + ((*pair)[i] * (*pair)[i]).sum() * (0.5 + static_cast<double>(i)) + (*pair)[i].sin().sum();
      loss.backward();
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
      *plain.state().at(c10::guts::to_string(p[0].unsafeGetTensorImpl())));
  BOOST_TEST(st.step() == 3);
}
