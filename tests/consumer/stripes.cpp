// stripes: 8×8 one-channel images of horizontal (class 0) or vertical (class 1) stripes in noise;
// a dataset plugin written against the installed SDK only (tests/consumer/CMakeLists.txt).
#include <modlab/errors.hpp>
#include <modlab/options.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

namespace stripes {

struct Options {
  std::int64_t n = 512;   // training images (a quarter as many test images)
  double noise = 0.5;     // standard deviation of the Gaussian noise
  std::int64_t seed = 0;  // data seed
};

const modlab::Options<Options>& options() {
  static const auto o = modlab::Options<Options>()
                            .key("n", &Options::n, "training images").at_least(4)
                            .key("noise", &Options::noise, "noise standard deviation").at_least(0.0)
                            .key("seed", &Options::seed, "data seed").at_least(0);
  return o;
}

std::shared_ptr<const modlab::Split> make_split(std::int64_t n, double noise, at::Generator& gen) {
  auto y = torch::randint(2, {n}, gen, torch::kLong);
  auto phase = torch::randint(2, {n, 1, 1}, gen, torch::kLong);
  auto line = (torch::arange(8).view({1, 8, 1}) + phase).remainder(2).to(torch::kFloat);  // [n, 8, 1]
  auto rows = line.expand({n, 8, 8});
  auto horizontal = y.view({n, 1, 1}).eq(0);
  auto x = torch::where(horizontal, rows, rows.transpose(1, 2)).unsqueeze(1);
  modlab::Batch b;
  b.inputs = (x + noise * torch::randn({n, 1, 8, 8}, gen)).contiguous();
  b.targets = y;
  return std::make_shared<modlab::TensorSplit>(b);
}

std::shared_ptr<modlab::Dataset> make(const modlab::Config& c, modlab::Host&) {
  const Options o = options().parse(c);
  auto gen = at::detail::createCPUGenerator(static_cast<std::uint64_t>(o.seed));
  modlab::DatasetSpec spec;
  spec.name = "stripes";
  spec.input_shape = {1, 8, 8};
  spec.num_classes = 2;
  spec.class_names = {"horizontal", "vertical"};
  spec.splits = {"train", "test"};
  std::map<std::string, std::shared_ptr<const modlab::Split>> splits{
      {"train", make_split(o.n, o.noise, gen)}, {"test", make_split(o.n / 4, o.noise, gen)}};
  return std::make_shared<modlab::TensorDataset>(spec, splits);
}

void register_stripes(modlab::Registrar& r) {
  modlab::DatasetEntry e;
  e.name = "stripes";
  e.description = "8x8 images of horizontal or vertical stripes in noise";
  e.keys = options().specs();
  e.factory = &make;
  r.add_dataset(std::move(e));
}

}  // namespace stripes

MODLAB_PLUGIN("stripes", modlab::kDatasetPlugin, "1.0.0", "stripes: a dataset plugin built out of tree",
              stripes::register_stripes)
