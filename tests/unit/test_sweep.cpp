#define BOOST_TEST_MODULE sweep
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <modlab/errors.hpp>
#include <modlab/runner/sweep.hpp>
#include <regex>
#include <set>
#include <sstream>

using namespace modlab;
using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {

Sweep expand(const std::string& text, const std::vector<std::string>& sets = {}, const std::string& file = "t.toml") {
  std::vector<std::pair<std::string, Value>> overrides;
  for (const auto& s : sets) overrides.push_back(parse_override(s));
  return expand_sweep(parse_toml(text, file), file, text, overrides);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The literal each run takes for `key`, in run order.
std::vector<std::string> column(const Sweep& s, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& run : s.runs)
    for (const auto& [k, v] : run.varied)
      if (k == key) out.push_back(v.literal());
  return out;
}

const Value& value_at(const RunSpec& run, const std::string& dotted) {
  const Value* cur = run.config.get();
  for (const auto& part : split_dotted(dotted)) cur = &cur->as_table().at(part);
  return *cur;
}

std::vector<std::string> ids(const Sweep& s) {
  std::vector<std::string> out;
  for (const auto& r : s.runs) out.push_back(r.run_id);
  return out;
}

using Strings = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_CASE(sha256_standard_vectors) {
  BOOST_TEST(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  BOOST_TEST(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the padding spills into a second block
  BOOST_TEST(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  BOOST_TEST(sha256_hex(std::string(1000000, 'a')) ==
             "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

BOOST_AUTO_TEST_CASE(malformed_toml_names_file_line_column) {
  std::string msg = error_of([] { parse_toml("[run]\nname = \n", "bad.toml"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(std::regex_search(msg, std::regex("^bad\\.toml:2:[0-9]+: .+")));
  msg = error_of([] { parse_toml("[model]\nx = 1\nx = 2\n", "dup.toml"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(std::regex_search(msg, std::regex("^dup\\.toml:3:[0-9]+: ")));
}

BOOST_AUTO_TEST_CASE(dates_are_rejected) {
  std::string msg = error_of([] { parse_toml("[run]\n\nwhen = 1979-05-27\n", "d.toml"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "d.toml:3:8"));
  BOOST_TEST(contains(msg, "run.when"));
  BOOST_TEST(contains(msg, "dates are not supported"));
  BOOST_TEST(contains(error_of([] { parse_toml("t = 07:32:00\n", "d.toml"); }), "dates are not supported"));
}

BOOST_AUTO_TEST_CASE(conversion_keeps_types_and_locations) {
  Value root = parse_toml(
      "[run]\n"                  // 1
      "name = \"x\"\n"           // 2
      "[model]\n"                // 3
      "n = 3\n"                  // 4
      "lr = 0.5\n"               // 5
      "on = true\n"              // 6
      "dims = [[1, 2], [3]]\n"   // 7
      "gate = { hidden = 8 }\n"  // 8
      "[model.sub]\n"            // 9
      "  k = \"v\"\n",           // 10
      "c.toml");
  const auto& model = root.as_table().at("model").as_table();
  BOOST_TEST(root.as_table().at("run").as_table().at("name").as_string() == "x");
  BOOST_TEST(model.at("n").as_int() == 3);
  BOOST_TEST(model.at("n").where().file == "c.toml");
  BOOST_TEST(model.at("n").where().line == 4);
  BOOST_TEST(model.at("n").where().column == 5);
  BOOST_TEST(model.at("n").where().str() == "c.toml:4:5");
  BOOST_TEST(model.at("lr").as_float() == 0.5);
  BOOST_TEST((model.at("lr").type() == ValueType::Float));
  BOOST_TEST(model.at("lr").where().line == 5);
  BOOST_TEST(model.at("on").as_bool());
  const auto& dims = model.at("dims").as_array();
  BOOST_TEST(dims.size() == 2u);
  BOOST_TEST(dims[0].as_array()[1].as_int() == 2);
  BOOST_TEST(dims[1].where().line == 7);
  BOOST_TEST(model.at("gate").as_table().at("hidden").as_int() == 8);
  BOOST_TEST(model.at("gate").as_table().at("hidden").where().line == 8);
  const Value& k = model.at("sub").as_table().at("k");
  BOOST_TEST(k.as_string() == "v");
  BOOST_TEST(k.where().line == 10);
  BOOST_TEST(k.where().column == 7);
}

BOOST_AUTO_TEST_CASE(grid_axes_follow_file_order_last_fastest) {
  // alphabetical order would put model.a first; the file puts model.z first
  Sweep s = expand(
      "[model]\na = \"base\"\n"
      "[sweep]\n"
      "grid = { \"model.z\" = [1, 2], \"model.a\" = [\"x\", \"y\", \"z\"] }\n");
  BOOST_TEST(s.varied_keys == (Strings{"model.z", "model.a"}));
  BOOST_TEST(s.runs.size() == 6u);
  BOOST_TEST(column(s, "model.z") == (Strings{"1", "1", "1", "2", "2", "2"}));
  BOOST_TEST(column(s, "model.a") == (Strings{"\"x\"", "\"y\"", "\"z\"", "\"x\"", "\"y\"", "\"z\""}));
  BOOST_TEST(value_at(s.runs[4], "model.a").as_string() == "y");
  BOOST_TEST(value_at(s.runs[4], "model.z").as_int() == 2);
  BOOST_TEST(s.runs[4].index == 4);
  BOOST_TEST(s.runs[4].seed == 0);
  BOOST_TEST(value_at(s.runs[4], "run.seed").as_int() == 0);
  BOOST_TEST(s.runs[4].config->as_table().count("sweep") == 0u);

  // a [sweep.grid] table, unquoted dotted keys, an axis creating a missing table, array values
  s = expand(
      "[model]\nstructure = [1]\n"
      "[sweep.grid]\n"
      "model.structure = [[6, 3, 2, 2], [6, 3, 3, 2, 2]]\n"
      "\"train.lr\" = [0.1, 0.01]\n"
      "model.gate.kind = [\"soft\"]\n");
  BOOST_TEST(s.varied_keys == (Strings{"model.structure", "train.lr", "model.gate.kind"}));
  BOOST_TEST(s.runs.size() == 4u);
  BOOST_TEST(column(s, "train.lr") == (Strings{"0.1", "0.01", "0.1", "0.01"}));
  BOOST_TEST(value_at(s.runs[2], "model.structure").literal() == "[6, 3, 3, 2, 2]");
  BOOST_TEST(value_at(s.runs[3], "train.lr").as_float() == 0.01);
  BOOST_TEST(value_at(s.runs[0], "model.gate.kind").as_string() == "soft");
}

BOOST_AUTO_TEST_CASE(zip_groups_vary_together_after_grid) {
  Sweep s = expand(
      "[sweep]\n"
      "grid = { \"model.k\" = [1, 2] }\n"
      "[[sweep.zip]]\n"
      "\"train.lr\" = [0.1, 0.01]\n"
      "\"train.steps\" = [10, 20]\n"
      "[[sweep.zip]]\n"
      "\"model.h\" = [4, 8, 16]\n");
  BOOST_TEST(s.varied_keys == (Strings{"model.k", "train.lr", "train.steps", "model.h"}));
  BOOST_TEST(s.runs.size() == 12u);
  BOOST_TEST(column(s, "model.h") == (Strings{"4", "8", "16", "4", "8", "16", "4", "8", "16", "4", "8", "16"}));
  BOOST_TEST(column(s, "train.lr") ==
             (Strings{"0.1", "0.1", "0.1", "0.01", "0.01", "0.01", "0.1", "0.1", "0.1", "0.01", "0.01", "0.01"}));
  BOOST_TEST(column(s, "model.k") == (Strings{"1", "1", "1", "1", "1", "1", "2", "2", "2", "2", "2", "2"}));
  for (const auto& run : s.runs)  // the pair never separates
    BOOST_TEST(value_at(run, "train.steps").as_int() == (value_at(run, "train.lr").as_float() == 0.1 ? 10 : 20));
}

BOOST_AUTO_TEST_CASE(seeds_as_list_count_or_run_seed) {
  Sweep s = expand("[sweep]\ngrid = { \"model.k\" = [1, 2] }\nseeds = 3\n");
  BOOST_TEST(s.varied_keys == (Strings{"model.k", "run.seed"}));
  BOOST_TEST(s.runs.size() == 6u);
  BOOST_TEST(column(s, "run.seed") == (Strings{"0", "1", "2", "0", "1", "2"}));
  BOOST_TEST(column(s, "model.k") == (Strings{"1", "1", "1", "2", "2", "2"}));
  for (const auto& r : s.runs) BOOST_TEST(value_at(r, "run.seed").as_int() == r.seed);

  s = expand("[run]\nseed = 4\n[sweep]\nseeds = [7, 9]\n");
  BOOST_TEST(column(s, "run.seed") == (Strings{"7", "9"}));
  BOOST_TEST(s.runs[1].seed == 9);

  s = expand("[run]\nseed = 5\n[sweep]\nseeds = [11]\n");  // one seed: nothing varies
  BOOST_TEST(s.varied_keys.empty());
  BOOST_TEST(s.runs.size() == 1u);
  BOOST_TEST(s.runs[0].seed == 11);

  s = expand("[run]\nseed = 5\n");
  BOOST_TEST(s.runs.size() == 1u);
  BOOST_TEST(s.runs[0].seed == 5);
  BOOST_TEST(s.runs[0].varied.empty());
  BOOST_TEST(expand("[model]\nk = 1\n").runs[0].seed == 0);

  BOOST_TEST(contains(error_of([] { expand("[sweep]\nseeds = 0\n"); }), "sweep.seeds"));
  BOOST_TEST(contains(error_of([] { expand("[sweep]\nseeds = [1, \"a\"]\n"); }), "sweep.seeds"));
}

BOOST_AUTO_TEST_CASE(override_parsing) {
  auto [k1, v1] = parse_override("train.lr=0.01");
  BOOST_TEST(k1 == "train.lr");
  BOOST_TEST((v1.type() == ValueType::Float));
  BOOST_TEST(v1.as_float() == 0.01);
  BOOST_TEST(v1.where().file == "--set");
  BOOST_TEST(v1.where().line == 0);
  auto [k2, v2] = parse_override("model.plugin=moe");
  BOOST_TEST(k2 == "model.plugin");
  BOOST_TEST(v2.as_string() == "moe");
  BOOST_TEST(v2.where().str() == "--set");
  BOOST_TEST(parse_override("model.dims = [1, 2]").second.literal() == "[1, 2]");
  BOOST_TEST(parse_override("run.name=\"a b\"").second.as_string() == "a b");
  BOOST_TEST(parse_override("train.on=true").second.as_bool());
  BOOST_TEST(parse_override("run.day=2024-01-02").second.as_string() == "2024-01-02");
  auto [k3, v3] = parse_override("sweep.grid.\"model.x\"=[2]");
  BOOST_TEST(k3 == "sweep.grid.\"model.x\"");
  BOOST_TEST(split_dotted(k3) == (Strings{"sweep", "grid", "model.x"}));
  BOOST_TEST(contains(error_of([] { parse_override("train.lr"); }), "expected key=value"));
  BOOST_TEST(contains(error_of([] { parse_override("train..lr=1"); }), "empty part"));
}

// Found by fuzz/fuzz_sweep (inputs in fuzz/regressions/sweep): a run file stores canonical_text and
// resume parses it back, so every string a sweep can hold must survive the trip.
BOOST_AUTO_TEST_CASE(overrides_are_utf8_and_every_string_reads_back_from_canonical_text) {
  const std::string msg = error_of([] { parse_override("run.name=e\xff\xfe"); });
  BOOST_TEST(contains(msg, "--set: not UTF-8 text (byte 0xff at position 11"), msg);
  BOOST_TEST(contains(error_of([] { parse_override("run.name=\xc0\xaf"); }), "not UTF-8"));        // overlong '/'
  BOOST_TEST(contains(error_of([] { parse_override("run.name=\xed\xa0\x80"); }), "not UTF-8"));   // a surrogate
  BOOST_TEST(parse_override("run.name=\xc3\xa9t\xc3\xa9").second.as_string() == "\xc3\xa9t\xc3\xa9");
  for (const std::string& raw : {std::string("a\x7f" "b"), std::string("tab\there"), std::string("c\x01r\x1f"), std::string("q\"\\")}) {
    Value t = Value::table({});
    set_dotted(t, "run.name", Value::string(raw, {}));
    const Value back = parse_toml(canonical_text(t), "canonical");
    BOOST_TEST(back.as_table().at("run").as_table().at("name").as_string() == raw);
    BOOST_TEST(run_id_of(back) == run_id_of(t));
  }
}

BOOST_AUTO_TEST_CASE(overrides_apply_to_base_and_sweep) {
  const std::string text =
      "[model]\nplugin = \"dense\"\n"
      "[sweep]\n"
      "grid = { \"model.k\" = [1, 2], \"model.h\" = [3, 4] }\n"
      "seeds = 2\n";
  Sweep s = expand(text, {"model.plugin=moe", "train.lr=0.5"});
  BOOST_TEST(s.runs.size() == 8u);
  BOOST_TEST(value_at(s.runs[0], "model.plugin").as_string() == "moe");
  BOOST_TEST(value_at(s.runs[7], "train.lr").as_float() == 0.5);

  s = expand(text, {"sweep.seeds=[5]"});
  BOOST_TEST(s.runs.size() == 4u);
  BOOST_TEST(s.varied_keys == (Strings{"model.k", "model.h"}));
  for (const auto& r : s.runs) BOOST_TEST(r.seed == 5);

  s = expand(text, {"sweep.grid={ \"model.z\" = [1, 2, 3], \"model.a\" = [0, 1] }"});
  BOOST_TEST(s.varied_keys == (Strings{"model.z", "model.a", "run.seed"}));
  BOOST_TEST(s.runs.size() == 12u);
  BOOST_TEST(column(s, "model.a") == (Strings{"0", "0", "1", "1", "0", "0", "1", "1", "0", "0", "1", "1"}));

  // replacing one axis keeps its place; an added axis comes after the file's
  s = expand(text, {"sweep.grid.\"model.k\"=[7]", "sweep.grid.\"model.b\"=[8, 9]"});
  BOOST_TEST(s.varied_keys == (Strings{"model.k", "model.h", "model.b", "run.seed"}));
  BOOST_TEST(s.runs.size() == 8u);
  BOOST_TEST(column(s, "model.k") == Strings(8, "7"));
  BOOST_TEST(column(s, "model.b") == (Strings{"8", "8", "9", "9", "8", "8", "9", "9"}));

  s = expand(text, {"sweep.zip=[{ \"train.lr\" = [1, 2], \"train.b\" = [3, 4] }]"});
  BOOST_TEST(s.varied_keys == (Strings{"model.k", "model.h", "train.lr", "train.b", "run.seed"}));
  BOOST_TEST(s.runs.size() == 16u);
  s = expand(text, {"sweep={ seeds = [4, 5, 6] }"});
  BOOST_TEST(s.varied_keys == (Strings{"run.seed"}));
  BOOST_TEST(column(s, "run.seed") == (Strings{"4", "5", "6"}));

  std::string msg = error_of([&] { expand(text, {"model.k=3"}); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "the sweep varies 'model.k'"));
  BOOST_TEST(contains(error_of([&] { expand(text, {"run.seed=3"}); }), "sweep.seeds"));
  BOOST_TEST(expand("[run]\nseed = 1\n", {"run.seed=9"}).runs[0].seed == 9);  // no sweep.seeds: allowed
}

BOOST_AUTO_TEST_CASE(empty_axis_is_an_error) {
  std::string msg = error_of([] { expand("[sweep]\ngrid = { \"model.k\" = [1], \"model.x\" = [] }\n"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "t.toml:2:"));
  BOOST_TEST(contains(msg, "sweep.grid.\"model.x\": an axis needs at least one value"));
}

BOOST_AUTO_TEST_CASE(zip_length_mismatch_names_group_and_lengths) {
  std::string msg =
      error_of([] { expand("[[sweep.zip]]\n\"a.x\" = [1]\n[[sweep.zip]]\n\"a.y\" = [1, 2]\n\"a.z\" = [1, 2, 3]\n"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "t.toml:5:"));
  BOOST_TEST(contains(msg, "sweep.zip group 2"));
  BOOST_TEST(contains(msg, "\"a.y\" has 2 values but \"a.z\" has 3"));
}

BOOST_AUTO_TEST_CASE(bad_sweep_keys_and_axes) {
  std::string msg = error_of([] { expand("[sweep]\nseed = [1, 2]\n"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "t.toml:2:"));
  BOOST_TEST(contains(msg, "unknown key 'sweep.seed' (did you mean 'sweep.seeds'?)"));
  BOOST_TEST(contains(error_of([] { expand("[sweep]\ngird = {}\n"); }), "did you mean 'sweep.grid'?"));
  BOOST_TEST(contains(error_of([] { expand("[sweep]\ngrid = { lr = [1] }\n"); }), "dotted key"));
  BOOST_TEST(contains(error_of([] { expand("[sweep]\ngrid = { \"model.k\" = 3 }\n"); }), "expected a list"));
  BOOST_TEST(contains(error_of([] { expand("[sweep]\ngrid = { \"run.seed\" = [1] }\n"); }), "sweep.seeds"));
  BOOST_TEST(contains(error_of([] { expand("seed = 1\n[model]\nk = 1\n"); }), "not inside a table"));
  msg = error_of([] { expand("[sweep]\ngrid = { \"model.k\" = [1] }\n[[sweep.zip]]\n\"model.k\" = [2]\n"); });
  BOOST_TEST(contains(msg, "varied twice"));
}

BOOST_AUTO_TEST_CASE(a_whole_table_axis_replaces_the_table) {
  const Sweep s = expand(
      "[dataset]\nplugin = \"toy\"\ntask = \"boolean\"\n[model]\nplugin = \"m\"\n"
      "[[sweep.zip]]\ndataset = [{ plugin = \"rotated_mnist\", mode = \"plain\" }, { plugin = \"toy\" }]\n"
      "\"model.k\" = [1, 2]\n");
  BOOST_TEST_REQUIRE(s.runs.size() == 2u);
  const auto& d0 = s.runs[0].config->as_table().at("dataset").as_table();
  BOOST_TEST(d0.at("plugin").as_string() == "rotated_mnist");
  BOOST_TEST(d0.count("task") == 0u, "the base table's keys are gone");
  const auto& d1 = s.runs[1].config->as_table().at("dataset").as_table();
  BOOST_TEST(d1.size() == 1u);
  // a one-part key with values that are not all tables stays an error
  BOOST_TEST(contains(error_of([] { expand("[sweep]\ngrid = { dataset = [{ plugin = \"toy\" }, 3] }\n"); }),
                      "dotted key"));
}

BOOST_AUTO_TEST_CASE(non_table_in_the_way) {
  std::string msg = error_of([] { expand("[model]\nx = 3\n[sweep]\ngrid = { \"model.x.y\" = [1] }\n"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(contains(msg, "cannot set 'model.x.y'"));
  BOOST_TEST(contains(msg, "'model.x' is integer 3 (t.toml:2:5), not a table"));

  Value t = Value::table({});
  set_dotted(t, "a.b.c", Value::integer(1));
  set_dotted(t, "a.d", Value::string("s"));
  BOOST_TEST(canonical_text(t) == "\n[a]\nd = \"s\"\n\n[a.b]\nc = 1\n");
  BOOST_TEST(contains(error_of([&] { set_dotted(t, "a.d.e", Value::integer(2)); }), "'a.d' is string"));
}

BOOST_AUTO_TEST_CASE(duplicate_run_ids_are_an_error) {
  std::string msg = error_of([] { expand("[sweep]\nseeds = [1, 1]\n"); });
  BOOST_TEST_INFO(msg);
  BOOST_TEST(std::regex_search(
      msg, std::regex("runs #0 and #1 resolve to the same config \\(run id [0-9a-f]{12}\\); check the sweep")));
  msg = error_of([] { expand("[sweep]\ngrid = { \"model.k\" = [1, 2, 2] }\n"); });
  BOOST_TEST(contains(msg, "runs #1 and #2 resolve to the same config"));
}

BOOST_AUTO_TEST_CASE(run_ids_ignore_key_order_and_track_values) {
  const std::string a =
      "[run]\nname = \"order\"\nseed = 1\n"
      "[model]\nplugin = \"moe\"\nnum_experts = 4\ngate = { hidden = 8, kind = \"soft\" }\n"
      "[train]\nlr = 0.1\nsteps = 100\n"
      "[sweep]\ngrid = { \"model.k\" = [1, 2] }\nseeds = 2\n";
  const std::string b =  // same content: tables, keys and inline-table keys reordered
      "[sweep]\nseeds = 2\ngrid = { \"model.k\" = [1, 2] }\n"
      "[train]\nsteps = 100\nlr = 0.1\n"
      "[model]\ngate = { kind = \"soft\", hidden = 8 }\nnum_experts = 4\nplugin = \"moe\"\n"
      "[run]\nseed = 1\nname = \"order\"\n";
  Sweep sa = expand(a, {}, "a.toml"), sb = expand(b, {}, "b.toml");
  BOOST_TEST(sa.runs.size() == 4u);
  BOOST_TEST(ids(sa) == ids(sb));
  const auto ids_a = ids(sa);
  std::set<std::string> distinct(ids_a.begin(), ids_a.end());
  BOOST_TEST(distinct.size() == 4u);

  // any changed value changes every id
  for (const auto& changed : {"lr = 0.2", "plugin = \"dense\"", "hidden = 9", "name = \"other\""}) {
    std::string c = a;
    std::string key = std::string(changed).substr(0, std::string(changed).find(' '));
    auto pos = c.find(key + " = ");
    c.replace(pos, c.find_first_of(",\n", pos) - pos, changed);
    BOOST_TEST_INFO(c);
    Sweep sc = expand(c);
    for (std::size_t i = 0; i < sc.runs.size(); ++i) BOOST_TEST(sc.runs[i].run_id != sa.runs[i].run_id);
  }
}

BOOST_AUTO_TEST_CASE(run_id_is_sha256_prefix_of_canonical_config) {
  Sweep s = expand("[run]\nname = \"tiny\"\n[model]\nn = 2\n");
  const RunSpec& run = s.runs.at(0);
  const std::string canonical = "\n[model]\nn = 2\n\n[run]\nname = \"tiny\"\nseed = 0\n";
  BOOST_TEST(canonical_text(*run.config) == canonical);
  BOOST_TEST(std::regex_match(run.run_id, std::regex("[0-9a-f]{12}")));
  BOOST_TEST(run.run_id == sha256_hex(canonical).substr(0, 12));
  BOOST_TEST(run_id_of(*run.config) == run.run_id);
  // pinned: a change here means every existing results folder stops recognising its runs
  BOOST_TEST(run.run_id == "16f3b240985b");
}

BOOST_AUTO_TEST_CASE(sweep_name_file_and_text) {
  const std::string text = "[run]\nname = \"named\"\n";
  Sweep s = expand(text, {}, "sub/dir/x.toml");
  BOOST_TEST(s.name == "named");
  BOOST_TEST(fs::path(s.file).is_absolute());
  BOOST_TEST(fs::path(s.file).filename() == "x.toml");
  BOOST_TEST(fs::path(s.dir) == fs::path(s.file).parent_path());
  BOOST_TEST(s.text == text);
  BOOST_TEST(expand("[model]\nk = 1\n", {}, "sub/my_sweep.toml").name == "my_sweep");
}

BOOST_AUTO_TEST_CASE(load_sweep_reads_files) {
  const modlab_test::TempDir temp("sweep_test");
  const fs::path& dir = temp.path;
  std::ofstream(dir / "s.toml") << "[model]\nk = 1\n[sweep]\nseeds = 2\n";
  Sweep s = load_sweep((dir / "s.toml").string(), {"model.k=5"});
  BOOST_TEST(s.runs.size() == 2u);
  BOOST_TEST(value_at(s.runs[1], "model.k").as_int() == 5);
  BOOST_TEST(s.dir == dir.lexically_normal().string());
  BOOST_TEST(parse_toml_file((dir / "s.toml").string()).as_table().count("sweep") == 1u);
  std::string msg = error_of([&] { load_sweep((dir / "missing.toml").string()); });
  BOOST_TEST(contains(msg, "cannot read sweep file"));
  BOOST_TEST(contains(msg, "missing.toml"));
}

BOOST_AUTO_TEST_CASE(format_expansion_layout) {
  Sweep s = expand("[sweep]\ngrid = { \"model.name\" = [\"a\", \"long\"] }\nseeds = [3, 10]\n");
  std::istringstream lines(format_expansion(s));
  std::string header, row;
  std::getline(lines, header);
  BOOST_TEST(header == "#  run_id        seed  model.name");
  std::getline(lines, row);
  BOOST_TEST(row == "0  " + s.runs[0].run_id + "  3     \"a\"");
  std::getline(lines, row);
  std::getline(lines, row);
  BOOST_TEST(row == "2  " + s.runs[2].run_id + "  3     \"long\"");
}

BOOST_AUTO_TEST_CASE(golden_expansions) {
  // Regenerate with MODLAB_UPDATE_GOLDEN=1 after an intended change to expansion or run ids.
  const fs::path dir = fs::path(MODLAB_TEST_SOURCE_DIR) / "unit" / "golden";
  const char* update_env = std::getenv("MODLAB_UPDATE_GOLDEN");
  const bool update = update_env && std::string(update_env) == "1";
  std::vector<fs::path> inputs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".toml") inputs.push_back(e.path());
  std::sort(inputs.begin(), inputs.end());
  BOOST_TEST_REQUIRE(!inputs.empty());
  for (const auto& input : inputs) {
    BOOST_TEST_CONTEXT(input.filename().string()) {
      std::string actual = format_expansion(load_sweep(input.string()));
      fs::path expected_path = input;
      expected_path.replace_extension(".expected");
      if (update) {
        std::ofstream(expected_path) << actual;
        BOOST_TEST_MESSAGE("updated " << expected_path.string());
        continue;
      }
      std::ifstream in(expected_path);
      BOOST_TEST_REQUIRE(in.good(), "missing " << expected_path.string() << " (run with MODLAB_UPDATE_GOLDEN=1)");
      std::ostringstream expected;
      expected << in.rdbuf();
      BOOST_TEST(actual == expected.str());
    }
  }
}
