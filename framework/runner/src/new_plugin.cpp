// `modlab new-plugin`: the files of a new plugin, from the templates below (@NAME@ = its name).
#include <modlab/errors.hpp>
#include <modlab/runner/new_plugin.hpp>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>

namespace fs = std::filesystem;

namespace modlab::runner {
namespace {

const char* kCMake = R"(# The @NAME@ plugin, built against an installed modlab:
#   cmake -S . -B build -DCMAKE_PREFIX_PATH=<modlab install prefix> && cmake --build build
# The plugin lands in build/plugins; `modlab run sweep.toml --plugin-path build/plugins` loads it.
cmake_minimum_required(VERSION 3.18)
project(@NAME@ CXX)
find_package(modlab REQUIRED)
modlab_add_plugin(NAME @NAME@ SOURCES @NAME@.cpp OUTPUT_DIR "${CMAKE_BINARY_DIR}/plugins")
)";

const char* kModel = R"(// @NAME@: a model plugin for modlab, an MLP classifier to start from. Inputs are flattened, go
// through `layers` hidden ReLU layers of `hidden` units, and end in one logit per class. It is built
// from modlab::nn layers, so analyzers can mask its weights. docs/writing-a-model.md explains
// each part: the options, the model, the dataset check and the registration.
#include <modlab/errors.hpp>
#include <modlab/nn/layers.hpp>
#include <modlab/options.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

namespace @NAME@ {

struct Options {
  std::int64_t hidden = 64;  // units per hidden layer
  std::int64_t layers = 1;   // hidden layers
};

/// Each config key declared once: name, member, doc, accepted values; defaults from `Options{}`.
const modlab::Options<Options>& options() {
  static const auto o = modlab::Options<Options>()
                            .key("hidden", &Options::hidden, "units per hidden layer").at_least(1)
                            .key("layers", &Options::layers, "hidden layers").in_range(0, 16);
  return o;
}

class Model : public modlab::Model {
 public:
  Model(const Options& o, const modlab::DatasetSpec& spec) {
    std::int64_t width = spec.input_numel();
    for (std::int64_t i = 0; i < o.layers; ++i) {
      hidden_.push_back(register_module("hidden" + std::to_string(i), modlab::nn::Linear(width, o.hidden)));
      width = o.hidden;
    }
    head_ = register_module("head", modlab::nn::Linear(width, spec.num_classes));
  }

  modlab::Output forward(const modlab::Batch& batch) override {
    auto x = batch.inputs.to(torch::kFloat).flatten(1);
    for (auto& layer : hidden_) x = torch::relu(layer(x));
    modlab::Output out;
    out.prediction = head_(x);
    out.kind = modlab::Output::Kind::Logits;  // the SDK's defaults: cross-entropy loss, argmax accuracy
    return out;
  }

 private:
  std::vector<modlab::nn::Linear> hidden_;
  modlab::nn::Linear head_{nullptr};
};

/// What the model needs of its dataset; `modlab run` asks before the first run starts.
void check(const modlab::Config& c, const modlab::DatasetSpec& spec) {
  if (spec.task != modlab::TaskKind::Classification)
    c.fail("plugin", "model '@NAME@' needs a classification dataset, but '" + spec.name + "' is " +
                         modlab::task_kind_name(spec.task));
}

std::shared_ptr<modlab::Model> make(const modlab::Config& c, const modlab::DatasetSpec& spec, modlab::Host&) {
  check(c, spec);
  return std::make_shared<Model>(options().parse(c), spec);
}

void register_plugin(modlab::Registrar& r) {
  modlab::ModelEntry e;
  e.name = "@NAME@";
  e.description = "an MLP classifier";
  e.keys = options().specs();
  e.factory = &make;
  e.check = &check;
  e.variants = {"layers = 2\nhidden = 16"};  // also built by the contract test
  r.add_model(std::move(e));
}

}  // namespace @NAME@

MODLAB_PLUGIN("@NAME@", modlab::kModelPlugin, "0.1.0", "@NAME@: an MLP classifier", @NAME@::register_plugin)
)";

const char* kDataset = R"(// @NAME@: a dataset plugin for modlab to start from: points on `classes` interleaved spiral
// arms in the plane, with Gaussian noise; a train and a test split drawn from the data seed.
// docs/writing-a-model.md explains the SDK types used here (DatasetSpec, Batch, TensorSplit).
#include <modlab/errors.hpp>
#include <modlab/options.hpp>
#include <modlab/plugin.hpp>

#include <torch/torch.h>

namespace @NAME@ {

struct Options {
  std::int64_t n = 2000;    // training points (a quarter as many test points)
  std::int64_t classes = 3; // spiral arms
  double noise = 0.05;      // standard deviation of the noise
  std::int64_t seed = 0;    // data seed (the run's seed does not change the data)
};

/// Each config key declared once: name, member, doc, accepted values; defaults from `Options{}`.
const modlab::Options<Options>& options() {
  static const auto o = modlab::Options<Options>()
                            .key("n", &Options::n, "training points").at_least(8)
                            .key("classes", &Options::classes, "spiral arms").in_range(2, 64)
                            .key("noise", &Options::noise, "noise standard deviation").at_least(0.0)
                            .key("seed", &Options::seed, "data seed").at_least(0);
  return o;
}

std::shared_ptr<const modlab::Split> make_split(std::int64_t n, const Options& o, at::Generator& gen) {
  const double pi = 3.141592653589793;
  auto y = torch::randint(o.classes, {n}, gen, torch::kLong);
  auto radius = torch::rand({n}, gen);
  auto angle = radius * 3.0 * pi + y.to(torch::kFloat) * (2.0 * pi / static_cast<double>(o.classes));
  auto x = torch::stack({radius * torch::cos(angle), radius * torch::sin(angle)}, 1);
  modlab::Batch b;
  b.inputs = (x + o.noise * torch::randn({n, 2}, gen)).contiguous();
  b.targets = y;
  return std::make_shared<modlab::TensorSplit>(b);
}

std::shared_ptr<modlab::Dataset> make(const modlab::Config& c, modlab::Host&) {
  const Options o = options().parse(c);
  auto gen = at::detail::createCPUGenerator(static_cast<std::uint64_t>(o.seed));
  modlab::DatasetSpec spec;
  spec.name = "@NAME@";
  spec.input_shape = {2};
  spec.num_classes = o.classes;
  spec.splits = {"train", "test"};
  std::map<std::string, std::shared_ptr<const modlab::Split>> splits{{"train", make_split(o.n, o, gen)},
                                                                      {"test", make_split(o.n / 4, o, gen)}};
  return std::make_shared<modlab::TensorDataset>(spec, splits);
}

void register_plugin(modlab::Registrar& r) {
  modlab::DatasetEntry e;
  e.name = "@NAME@";
  e.description = "points on interleaved spiral arms, one class per arm";
  e.keys = options().specs();
  e.factory = &make;
  r.add_dataset(std::move(e));
}

}  // namespace @NAME@

MODLAB_PLUGIN("@NAME@", modlab::kDatasetPlugin, "0.1.0", "@NAME@: spiral arms", @NAME@::register_plugin)
)";

const char* kModelSweep = R"(# Trains the @NAME@ model on the toy dataset's 2-D multi-class task, two seeds.
#   modlab run sweep.toml --plugin-path build/plugins --out results
[run]
name = "@NAME@"

[dataset]
plugin = "toy"
task = "multi_class"

[model]
plugin = "@NAME@"
hidden = 32

[train]
epochs = 20
batch_size = 32
lr = 0.01

[sweep]
seeds = [0, 1]
)";

const char* kDatasetSweep = R"(# Trains modlab's general-purpose `mlp` on the @NAME@ dataset, two seeds.
#   modlab run sweep.toml --plugin-path build/plugins --out results
[run]
name = "@NAME@"

[dataset]
plugin = "@NAME@"

[model]
plugin = "mlp"

[train]
epochs = 20
batch_size = 32
lr = 0.01

[sweep]
seeds = [0, 1]
)";

const char* kReadme = R"(# @NAME@

A modlab @KIND@ plugin (made with `modlab new-plugin @NAME@ --kind @KIND@`).

| file | what |
|---|---|
| `@NAME@.cpp` | the plugin: its options, the @KIND@, and its registration |
| `CMakeLists.txt` | builds it against an installed modlab (`find_package(modlab)`) |
| `sweep.toml` | trains it: two seeds |

Build it against a modlab install (`cmake --install <modlab build> --prefix P`), then train it:

    cmake -S . -B build -DCMAKE_PREFIX_PATH=P
    cmake --build build
    P/bin/modlab plugins @NAME@ --plugin-path build/plugins   # its config keys
    P/bin/modlab run sweep.toml --plugin-path build/plugins --out results
    P/bin/modlab show results

Every key a sweep sets is checked against the keys declared in `options()` before any run starts.
modlab's plugin contract test checks it as it checks modlab's own plugins (shapes, gradients,
deterministic evaluation, splits): from a modlab build tree,
`MODLAB_PLUGIN_PATH=build/plugins <modlab build>/tests/plugin_test_contract`.
)";

void check_name(const std::string& name) {
  bool ok = !name.empty() && std::islower(static_cast<unsigned char>(name[0]));
  for (char c : name) ok = ok && (std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_');
  if (!ok)
    throw ConfigError("new-plugin: the name '" + name +
                      "' must start with a lower-case letter and hold only lower-case letters, digits and '_' "
                      "(it is the plugin's name in sweeps and its C++ namespace)");
}

std::string filled(std::string text, const std::string& name, const std::string& kind) {
  for (const auto& [key, value] : std::map<std::string, std::string>{{"@NAME@", name}, {"@KIND@", kind}})
    for (auto at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

}  // namespace

std::vector<std::string> write_new_plugin(const std::string& name, const std::string& kind, const std::string& dir) {
  check_name(name);
  if (kind != "model" && kind != "dataset")
    throw ConfigError("new-plugin --kind: expected model or dataset, found '" + kind + "'");
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec)))
    throw ConfigError("new-plugin: " + dir + " exists and is not an empty folder; choose another --dir");
  fs::create_directories(dir);
  const bool model = kind == "model";
  const std::map<std::string, const char*> files = {{"CMakeLists.txt", kCMake},
                                                    {name + ".cpp", model ? kModel : kDataset},
                                                    {"sweep.toml", model ? kModelSweep : kDatasetSweep},
                                                    {"README.md", kReadme}};
  std::vector<std::string> written;
  for (const auto& [file, text] : files) {
    const fs::path path = fs::path(dir) / file;
    std::ofstream(path) << filled(text, name, kind);
    written.push_back(path.string());
  }
  return written;
}

}  // namespace modlab::runner
