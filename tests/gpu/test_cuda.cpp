// GPU tests: a real sweep trained with `--device cuda`, and the CPU/GPU agreement of a forward pass.
// Without a CUDA device (every CI machine) the CUDA cases are skipped with a message saying so, and
// one case checks that asking for CUDA where there is none is a clean input error.
#define BOOST_TEST_MODULE cuda
#include <boost/test/unit_test.hpp>

#include "../e2e/cli_util.hpp"

#include <modlab/runner/h5.hpp>

#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>

using namespace e2e;
namespace utf = boost::unit_test;

namespace {

struct CudaPresent {
  boost::test_tools::assertion_result operator()(utf::test_unit_id) const {
    const bool present = torch::cuda::is_available();
    boost::test_tools::assertion_result r(present);
    if (!r) r.message() << "no CUDA device (torch::cuda::is_available() is false); GPU case skipped";
    return r;
  }
};

const std::string kSweep = std::string(MODLAB_TEST_SOURCE_DIR) + "/../sweeps/quickstart.toml";

std::string run_quickstart(const fs::path& out, const std::string& device) {
  return "run " + quote(kSweep) + " --jobs 1 --device " + device + " --out " + quote(out.string()) +
         " --set train.epochs=3";
}

}  // namespace

BOOST_AUTO_TEST_CASE(cuda_without_a_device_is_an_input_error) {
  if (torch::cuda::is_available()) {
    BOOST_TEST_MESSAGE("a CUDA device is present; the no-device error path is not reachable here");
    return;
  }
  TempDir d("nocuda");
  fs::path out = d.path / "out";
  auto r = run_modlab(run_quickstart(out, "cuda"));
  BOOST_TEST(r.code == 2, r.output);
  BOOST_TEST(r.output.find("--device cuda: CUDA is not available") != std::string::npos, r.output);
  BOOST_TEST(!fs::exists(out));
}

BOOST_AUTO_TEST_CASE(quickstart_trains_on_cuda, *utf::precondition(CudaPresent())) {
  TempDir d("cuda_sweep");
  fs::path out = d.path / "out";
  auto r = run_modlab(run_quickstart(out, "cuda"));
  BOOST_TEST_REQUIRE(r.code == 0, r.output);
  auto runs = modlab::runner::read_sweep_index(out.string());
  BOOST_TEST(runs.size() == 6u);
  for (const auto& s : runs) BOOST_TEST(s.status == "completed", s.run_id);
  // every run file records the CUDA device it trained on, and a test accuracy in [0, 1]
  if (!has_python_h5py()) return;
  auto py = sh("/usr/bin/python3 -c " +
               quote("import h5py,sys,glob\n"
                     "files=glob.glob(sys.argv[1]+'/runs/*.h5')\n"
                     "assert len(files)==6, files\n"
                     "for p in files:\n"
                     "  f=h5py.File(p,'r'); a=f['metrics/test_accuracy'][-1]\n"
                     "  assert 0.0<=a<=1.0, (p,a)\n"
                     "  d=f.attrs['device']; d=d.decode() if isinstance(d,bytes) else d\n"
                     "  assert d.startswith('cuda'), (p,d)\n"
                     "print('ok')\n") +
               " " + quote(out.string()));
  BOOST_TEST(py.code == 0, py.output);
}

BOOST_AUTO_TEST_CASE(batched_matmul_agrees_with_cpu, *utf::precondition(CudaPresent())) {
  torch::manual_seed(0);
  auto w = torch::randn({8, 64, 32}, torch::kFloat64);
  auto b = torch::randn({8, 1, 32}, torch::kFloat64);
  auto x = torch::randn({8, 128, 64}, torch::kFloat64);
  auto cpu = torch::baddbmm(b, x, w);
  auto gpu = torch::baddbmm(b.cuda(), x.cuda(), w.cuda()).cpu();
  BOOST_TEST(torch::allclose(cpu, gpu, 1e-9, 1e-9));
}
