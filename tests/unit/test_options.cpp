#define BOOST_TEST_MODULE options
#include <boost/test/unit_test.hpp>

#include "config_error_of.hpp"

#include "fixture_registry.hpp"

#include <modlab/errors.hpp>
#include <modlab/options.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/sweep.hpp>
#include <modlab/runner/trainer.hpp>

#include <cmath>
#include <limits>

using namespace modlab;
using namespace modlab::runner;

namespace {

/// One member of every supported type.
struct Opts {
  bool flag = true;
  int small = 3;
  std::int64_t count = 4;
  double rate = 0.001;
  float ratio = 0.1f;
  std::string kind = "linear";
  std::vector<std::int64_t> widths = {32, 16};
  std::vector<int> ids;
  std::vector<double> scales = {1.0, 0.5};
  std::vector<std::string> names = {"a"};
  std::vector<std::vector<std::int64_t>> groups = {{0, 1}, {2}};
  std::map<std::string, double> lrs;
  Config inner;
};

const Options<Opts>& opts() {
  static const auto o = Options<Opts>()
                            .key("flag", &Opts::flag, "a switch")
                            .key("small", &Opts::small, "an int").in_range(0, 10)
                            .key("count", &Opts::count, "number of experts").at_least(1)
                            .key("rate", &Opts::rate, "learning rate").greater_than(0).finite()
                            .key("ratio", &Opts::ratio, "a probability").at_least(0).less_than(1)
                            .key("kind", &Opts::kind, "network").choices({"linear", "mlp", "conv"})
                            .key("widths", &Opts::widths, "hidden widths").at_least(1)
                            .key("ids", &Opts::ids, "ids")
                            .key("scales", &Opts::scales, "factors").at_least(0).finite()
                            .key("names", &Opts::names, "names").choices({"a", "b"})
                            .key("groups", &Opts::groups, "classes per expert").at_least(0)
                            .key("lrs", &Opts::lrs, "lr per group").greater_than(0)
                            .key("inner", &Opts::inner, "a wrapped model").model_table();
  return o;
}

Config table_of(const std::string& toml) {
  return Config(std::make_shared<Value>(parse_toml(toml, "x.toml")), "model");
}

using test_config_error::error_of;

std::string parse_error(const std::string& toml) {
  return error_of([&] { opts().parse(table_of(toml)); });
}

const KeySpec& spec(const std::vector<KeySpec>& keys, const std::string& name) {
  for (const auto& k : keys)
    if (k.name == name) return k;
  BOOST_FAIL("no key " + name);
  return keys.front();
}

Registry& fixtures() { return test_fixtures::basic_registry(); }

}  // namespace

BOOST_AUTO_TEST_CASE(defaults_come_from_the_struct) {
  const auto& keys = opts().specs();
  BOOST_TEST(keys.size() == 13u);
  BOOST_TEST(spec(keys, "flag").default_value == "true");
  BOOST_TEST(spec(keys, "small").default_value == "3");
  BOOST_TEST(spec(keys, "count").default_value == "4");
  BOOST_TEST(spec(keys, "rate").default_value == "0.001");
  BOOST_TEST(spec(keys, "ratio").default_value == "0.1");  // the float's shortest text, not 0.10000000149…
  BOOST_TEST(spec(keys, "kind").default_value == "\"linear\"");
  BOOST_TEST(spec(keys, "widths").default_value == "[32, 16]");
  BOOST_TEST(spec(keys, "ids").default_value == "[]");
  BOOST_TEST(spec(keys, "scales").default_value == "[1.0, 0.5]");
  BOOST_TEST(spec(keys, "names").default_value == "[\"a\"]");
  BOOST_TEST(spec(keys, "groups").default_value == "[[0, 1], [2]]");
  BOOST_TEST(spec(keys, "lrs").default_value == "{}");
  BOOST_TEST(spec(keys, "inner").default_value == "{}");
  BOOST_TEST((spec(keys, "count").type == ValueType::Int));
  BOOST_TEST((spec(keys, "widths").type == ValueType::Array && spec(keys, "widths").element == ValueType::Int));
  BOOST_TEST((spec(keys, "groups").element == ValueType::Array));
  BOOST_TEST((spec(keys, "lrs").type == ValueType::Table && spec(keys, "lrs").element == ValueType::Float));
  BOOST_TEST(spec(keys, "inner").model_table);

  const Opts o = opts().parse(table_of(""));
  BOOST_TEST(o.flag);
  BOOST_TEST(o.count == 4);
  BOOST_TEST(o.ratio == 0.1f);
  BOOST_TEST(o.kind == "linear");
  BOOST_TEST((o.widths == std::vector<std::int64_t>{32, 16}));
  BOOST_TEST(o.inner.prefix() == "model.inner");  // an absent sub-table still knows where it belongs
  BOOST_TEST(o.inner.keys().empty());
}

BOOST_AUTO_TEST_CASE(parse_fills_every_member) {
  const Opts o = opts().parse(table_of(R"(
flag = false
small = 7
count = 2
rate = 3
ratio = 0.25
kind = "conv"
widths = [8]
ids = [5, 6]
scales = [2.0]
names = ["b", "a"]
groups = [[3], [4, 5]]
lrs = {routing = 0.1, modules = 1}
[inner]
plugin = "moe"
num_experts = 3
)"));
  BOOST_TEST(!o.flag);
  BOOST_TEST(o.small == 7);
  BOOST_TEST(o.count == 2);
  BOOST_TEST(o.rate == 3.0);  // an integer where a float is expected
  BOOST_TEST(o.ratio == 0.25f);
  BOOST_TEST(o.kind == "conv");
  BOOST_TEST((o.widths == std::vector<std::int64_t>{8}));
  BOOST_TEST((o.ids == std::vector<int>{5, 6}));
  BOOST_TEST((o.scales == std::vector<double>{2.0}));
  BOOST_TEST((o.names == std::vector<std::string>{"b", "a"}));
  BOOST_TEST((o.groups == std::vector<std::vector<std::int64_t>>{{3}, {4, 5}}));
  BOOST_TEST(o.lrs.at("routing") == 0.1);
  BOOST_TEST(o.lrs.at("modules") == 1.0);
  BOOST_TEST(o.inner.get<std::int64_t>("num_experts") == 3);
  BOOST_TEST(o.inner.prefix() == "model.inner");
}

BOOST_AUTO_TEST_CASE(parse_into_overrides_only_the_keys_present) {
  Opts o = opts().parse(table_of("count = 9\nkind = \"mlp\"\n"));
  opts().parse_into(table_of("kind = \"conv\"\n"), o);
  BOOST_TEST(o.count == 9);
  BOOST_TEST(o.kind == "conv");
}

BOOST_AUTO_TEST_CASE(each_violation_is_located_and_says_expected_and_found) {
  BOOST_TEST(parse_error("count = 0\n") == "x.toml:1:9: model.count: expected an integer >= 1, got 0");
  BOOST_TEST(parse_error("\n\nsmall = 11\n") == "x.toml:3:9: model.small: expected an integer in [0, 10], got 11");
  BOOST_TEST(parse_error("rate = 0.0\n") == "x.toml:1:8: model.rate: expected a finite number > 0, got 0.0");
  BOOST_TEST(parse_error("rate = inf\n") == "x.toml:1:8: model.rate: expected a finite number > 0, got inf");
  BOOST_TEST(parse_error("rate = nan\n") == "x.toml:1:8: model.rate: expected a finite number > 0, got nan");
  BOOST_TEST(parse_error("ratio = 1\n") == "x.toml:1:9: model.ratio: expected a number in [0, 1), got 1");
  BOOST_TEST(parse_error("kind = \"mpl\"\n") ==
             "x.toml:1:8: model.kind: expected one of \"linear\", \"mlp\", \"conv\", got \"mpl\" (did you mean 'mlp'?)");
  BOOST_TEST(parse_error("widths = [4, 0]\n") == "x.toml:1:10: model.widths: expected integers >= 1, element 1 is 0");
  BOOST_TEST(parse_error("scales = [1, -0.5]\n") ==
             "x.toml:1:10: model.scales: expected finite numbers >= 0, element 1 is -0.5");
  BOOST_TEST(parse_error("names = [\"c\"]\n") ==
             "x.toml:1:9: model.names: expected each one of \"a\", \"b\", element 0 is \"c\" (did you mean 'a'?)");
  BOOST_TEST(parse_error("groups = [[1], [-2]]\n") ==
             "x.toml:1:10: model.groups: expected integers >= 0, element 0 is -2");
  BOOST_TEST(parse_error("lrs = {a = 0}\n") == "x.toml:1:7: model.lrs: expected numbers > 0, 'a' is 0");
  // a wrong type keeps the typed getter's message
  BOOST_TEST(parse_error("count = 1.5\n") == "x.toml:1:9: model.count: expected integer, found float 1.5");
  BOOST_TEST(parse_error("lrs = {a = \"x\"}\n") == "x.toml:1:12: model.lrs.a: expected float, found string \"x\"");
}

BOOST_AUTO_TEST_CASE(constraint_text_is_what_plugins_prints) {
  const auto& keys = opts().specs();
  BOOST_TEST(spec(keys, "flag").constraint() == "");
  BOOST_TEST(spec(keys, "count").constraint() == ">= 1");
  BOOST_TEST(spec(keys, "small").constraint() == "in [0, 10]");
  BOOST_TEST(spec(keys, "rate").constraint() == "finite, > 0");
  BOOST_TEST(spec(keys, "ratio").constraint() == "in [0, 1)");
  BOOST_TEST(spec(keys, "kind").constraint() == "linear | mlp | conv");
  BOOST_TEST(spec(keys, "widths").constraint() == "each >= 1");
  BOOST_TEST(spec(keys, "names").constraint() == "each a | b");
  BOOST_TEST(spec(keys, "inner").constraint() == "model table");
  BOOST_TEST(spec(keys, "widths").type_text() == "array of integers");
  BOOST_TEST(spec(keys, "lrs").type_text() == "table of floats");
}

BOOST_AUTO_TEST_CASE(check_applies_the_same_declarations_without_parsing) {
  const auto& keys = opts().specs();
  const Config bad = table_of("\ncount = -1\n");
  BOOST_TEST(error_of([&] { spec(keys, "count").check(bad); }) ==
             "x.toml:2:9: model.count: expected an integer >= 1, got -1");
  BOOST_TEST(error_of([&] { spec(keys, "count").check(table_of("")); }).empty());  // absent: nothing to check
  BOOST_TEST(error_of([&] { validate_keys(bad, keys); }) == "x.toml:2:9: model.count: expected an integer >= 1, got -1");
  BOOST_TEST(error_of([&] { validate_keys(table_of("\ncont = 1\n"), keys); }) ==
             "x.toml:2:8: unknown key 'model.cont' (did you mean 'model.count'?)");
}

BOOST_AUTO_TEST_CASE(fail_unknown_suggests_the_closest_name) {
  const Config c = table_of("target = \"Mael\"\n");
  BOOST_TEST(error_of([&] { c.fail_unknown("target", "attribute", "Mael", {"Male", "Smiling"}, "; see list.txt"); }) ==
             "x.toml:1:10: model.target: unknown attribute 'Mael' (did you mean 'Male'?); see list.txt");
  BOOST_TEST(error_of([&] { c.fail_unknown("target", "attribute", "Wavy", {"Male", "Smiling"}); }) ==
             "x.toml:1:10: model.target: unknown attribute 'Wavy'");
}

// The trainer's keys: today's defaults, and the ranges checked before any run.
BOOST_AUTO_TEST_CASE(train_keys_keep_their_defaults_and_gain_ranges) {
  const auto& keys = train_keys();
  const std::map<std::string, std::string> today = {
      {"epochs", "10"},          {"batch_size", "32"},       {"eval_batch_size", "4096"}, {"steps_per_epoch", "0"},
      {"shuffle", "true"},       {"drop_last", "false"},     {"optimizer", "\"adam\""},   {"lr", "0.001"},
      {"momentum", "0.0"},       {"nesterov", "false"},      {"amsgrad", "false"},        {"weight_decay", "0.0"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},        {"eps", "1e-08"},           {"alpha", "0.99"},           {"schedule", "\"constant\""},
      {"step_size", "30"},       {"gamma", "0.1"},           {"eta_min", "0.0"},          {"grad_clip", "0.0"},
      {"warmup_steps", "0"},     {"bucket", "0"},
      {"eval_every", "1"},       {"eval_splits", "[]"},      {"train_split", "\"\""},     {"lr_groups", "{}"},
      {"checkpoint_every", "1"}, {"phases", "{}"}};
  BOOST_TEST(keys.size() == today.size());
  for (const auto& k : keys) BOOST_TEST(today.at(k.name) == k.default_value, k.name);
  BOOST_TEST(spec(keys, "epochs").constraint() == ">= 1");
  BOOST_TEST(spec(keys, "lr").constraint() == "finite, in (0, 1000]");
  BOOST_TEST(spec(keys, "momentum").constraint() == "in [0, 1)");
  BOOST_TEST(spec(keys, "weight_decay").constraint() == "finite, >= 0");
  BOOST_TEST(spec(keys, "optimizer").constraint() == "adam | adamw | sgd | rmsprop");
}

// A wrapped model's table is checked against the wrapped model's keys before anything runs.
BOOST_AUTO_TEST_CASE(nested_model_tables_are_validated_against_the_inner_plugin) {
  auto err = [](const std::string& model) {
    return error_of([&] {
      validate_run_config(parse_toml("[dataset]\nplugin = \"fixture_blobs\"\n" + model, "v.toml"), fixtures(), "run");
    });
  };
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_mlp\"\nhidden = 4\n").empty());
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_mlp\"\nhidden = 0\n") ==
             "v.toml:7:10: model.inner.hidden: expected an integer >= 1, got 0");
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_mlp\"\nhiden = 4\n") ==
             "v.toml:7:9: unknown key 'model.inner.hiden' (did you mean 'model.inner.hidden'?)");
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_mpl\"\n") ==
             "v.toml:6:10: model.inner.plugin: unknown model plugin 'fixture_mpl' (did you mean 'fixture_mlp'?)");
  const auto missing = err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nhidden = 4\n");
  BOOST_TEST(missing.rfind("v.toml:5:", 0) == 0u, missing);
  BOOST_TEST(missing.find("model.inner.plugin: required key is missing") != std::string::npos, missing);
  // the wrapper's own keys are checked as well, and nested tables nest
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\nscale = 0\n") ==
             "v.toml:5:9: model.scale: expected a finite number > 0, got 0");
  BOOST_TEST(err("[model]\nplugin = \"fixture_wrapper\"\n[model.inner]\nplugin = \"fixture_wrapper\"\n"
                 "[model.inner.inner]\nplugin = \"fixture_mlp\"\nsleep_ms = -1\n") ==
             "v.toml:9:12: model.inner.inner.sleep_ms: expected an integer >= 0, got -1");
}

// The real plugins: every default satisfies its own declaration, and the printed defaults are the
// ones the key lists held before the options were declared once.
BOOST_AUTO_TEST_CASE(real_plugins_declare_consistent_keys) {
  Registry& reg = default_registry();
  auto check_defaults = [](const std::string& who, const std::vector<KeySpec>& keys) {
    for (const auto& k : keys) {
      if (k.default_value.empty()) continue;
      const Config t = table_of(k.name + " = " + k.default_value + "\n");
      BOOST_TEST(error_of([&] { k.check(t); }).empty(), who << "." << k.name << " = " << k.default_value);
    }
  };
  for (const auto& m : reg.model_names()) check_defaults(m, reg.model(m).keys);
  for (const auto& d : reg.dataset_names()) check_defaults(d, reg.dataset(d).keys);
  check_defaults("train", train_keys());
  check_defaults("run", run_keys());

  auto defaults = [](const std::vector<KeySpec>& keys) {
    std::map<std::string, std::string> out;
    for (const auto& k : keys) out[k.name] = k.default_value;
    return out;
  };
  BOOST_TEST_REQUIRE(reg.has_model("moe"));
  const auto moe = defaults(reg.model("moe").keys);
  BOOST_TEST(moe.size() == 36u);
  BOOST_TEST(moe.at("method") == "\"expectation\"");
  BOOST_TEST(moe.at("num_experts") == "4");
  BOOST_TEST(moe.at("expert_hidden") == "[4]");
  BOOST_TEST(moe.at("temperature") == "1.0");
  BOOST_TEST(moe.at("eps") == "1e-15");
  BOOST_TEST(moe.at("expert_classes") == "[]");
  BOOST_TEST(moe.at("expert_init_seed") == "-1");
  BOOST_TEST(moe.at("decision_grid") == "100");
  const auto mode = defaults(reg.model("mode").keys);
  BOOST_TEST(mode.size() == 17u);
  BOOST_TEST(mode.at("expert_hidden") == "[128, 128]");
  BOOST_TEST(mode.at("dropout") == "0.2");
  BOOST_TEST(mode.at("temperature") == "0.02");
  BOOST_TEST(mode.at("sparse_form") == "\"renormalized\"");
  const auto toy = defaults(reg.dataset("toy").keys);
  BOOST_TEST(toy.size() == 11u);
  BOOST_TEST(toy.at("seed") == "4058803790");
  BOOST_TEST(toy.at("structure") == "[6, 3, 2, 2]");
  BOOST_TEST(toy.at("test_fraction") == "0.2");
  const auto mnist = defaults(reg.dataset("rotated_mnist").keys);
  BOOST_TEST(mnist.at("rotations") == "[0, 90, 180, 270]");
  BOOST_TEST(mnist.at("split_fractions") == "[0.7, 0.2, 0.1]");
  const auto shared = defaults(reg.model("hierarchically_modular_shared_modules").keys);
  BOOST_TEST(shared.at("module_arch") == "[2, 12, 1]");
  BOOST_TEST(shared.at("location_noise") == "false");
  BOOST_TEST(shared.count("num_slots") == 1u);
  BOOST_TEST(defaults(reg.model("hierarchically_modular").keys).count("num_slots") == 0u);
}
