#define BOOST_TEST_MODULE loader
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>

#include <filesystem>
#include <fstream>

using namespace modlab;
using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {
std::string fixture(const std::string& c) { return std::string(MODLAB_FIXTURE_PLUGIN_DIR) + "/" + c; }
std::string fixture_file(const std::string& c) { return fixture(c) + "/fixture_" + c + ".so"; }

template <class F>
std::string load_error(F f) {
  try {
    f();
  } catch (const PluginLoadError& e) {
    return e.what();
  } catch (const Error& e) {
    return std::string("wrong error type: ") + e.what();
  }
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(loads_a_good_plugin) {
  Registry r;
  r.load_file(fixture_file("basic"));
  BOOST_TEST(r.has_model("fixture_mlp"));
  BOOST_TEST(r.has_dataset("fixture_blobs"));
  BOOST_TEST(r.plugins().size() == 1u);
  BOOST_TEST(std::string(r.plugins()[0].info->name) == "fixture_basic");
  BOOST_TEST(std::string(r.plugins()[0].info->version) == "0.1.0");
  BOOST_TEST(r.model("fixture_mlp").keys.size() == 6u);
  // loading the same file again is a no-op
  r.load_file(fixture_file("basic"));
  BOOST_TEST(r.plugins().size() == 1u);
}

BOOST_AUTO_TEST_CASE(bad_abi_version_names_file_field_expected_found) {
  Registry r;
  auto m = load_error([&] { r.load_file(fixture_file("bad_abi")); });
  BOOST_TEST(m.find(fixture_file("bad_abi")) != std::string::npos, m);
  BOOST_TEST(
      m.find("field abi_version: expected " + std::to_string(modlab::kAbiVersion) + ", found 999") != std::string::npos,
      m);
  BOOST_TEST(r.plugins().empty());
}

BOOST_AUTO_TEST_CASE(missing_entry_symbol) {
  Registry r;
  auto m = load_error([&] { r.load_file(fixture_file("no_entry")); });
  BOOST_TEST(m.find(fixture_file("no_entry")) != std::string::npos, m);
  BOOST_TEST(m.find("no entry symbol 'modlab_plugin_entry'") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(not_a_shared_object) {
  const modlab_test::TempDir temp("loader");
  const fs::path p = temp.path / "modlab_not_a_plugin.so";
  { std::ofstream(p.string()) << "garbage"; }
  Registry r;
  auto m = load_error([&] { r.load_file(p.string()); });
  BOOST_TEST(m.find(p.string() + ": not a shared library") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(duplicate_names_name_both_files) {
  Registry r;
  auto m = load_error([&] { r.load_directories({fixture("duplicate")}); });
  BOOST_TEST(m.find("model 'dup' is registered twice") != std::string::npos, m);
  BOOST_TEST(m.find("fixture_dup_a.so") != std::string::npos, m);
  BOOST_TEST(m.find("fixture_dup_b.so") != std::string::npos, m);
  // the first plugin stays usable
  BOOST_TEST(r.has_model("dup"));
}

BOOST_AUTO_TEST_CASE(throwing_factory_is_reported_with_plugin) {
  Registry r;
  r.load_file(fixture_file("throwing_factory"));
  RunHost host(r, HostOptions{});
  DatasetSpec spec;
  try {
    host.create_model("throwing", Config(), spec);
    BOOST_FAIL("expected an error");
  } catch (const Error& e) {
    std::string m = e.what();
    BOOST_TEST(m.find("model plugin 'throwing'") != std::string::npos, m);
    BOOST_TEST(m.find("fixture_throwing_factory.so") != std::string::npos, m);
    BOOST_TEST(m.find("factory exploded on purpose") != std::string::npos, m);
  }
}

BOOST_AUTO_TEST_CASE(unknown_plugin_lists_known_and_suggests) {
  Registry r;
  r.load_file(fixture_file("basic"));
  try {
    r.model("fixture_mpl");
    BOOST_FAIL("expected an error");
  } catch (const ConfigError& e) {
    std::string m = e.what();
    BOOST_TEST(m.find("unknown model plugin 'fixture_mpl'") != std::string::npos, m);
    BOOST_TEST(m.find("did you mean 'fixture_mlp'") != std::string::npos, m);
    BOOST_TEST(m.find("known models: fixture_mlp") != std::string::npos, m);
  }
}

BOOST_AUTO_TEST_CASE(search_path_order_and_env) {
  setenv("MODLAB_PLUGIN_PATH", "/tmp/a:/tmp/b", 1);
  auto dirs = plugin_search_path({"/tmp/first"});
  BOOST_REQUIRE(dirs.size() >= 3u);
  BOOST_TEST(dirs[0] == "/tmp/first");
  BOOST_TEST(dirs[1] == "/tmp/a");
  BOOST_TEST(dirs[2] == "/tmp/b");
}
