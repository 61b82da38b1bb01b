#define BOOST_TEST_MODULE shared_file
// Host::share: one run makes a shared file while the others with the same identity wait and then
// read it; the identity is the name, the seed, the named config values and the plugin's extra text;
// a maker that ends without publishing hands the job to the next run.
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"
#include "fixture_registry.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/sweep.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace modlab;
using namespace modlab::runner;
namespace fs = std::filesystem;

namespace {

struct Folder {
  modlab_test::TempDir dir{"shared"};
  fs::path path = dir.path;
};

std::unique_ptr<RunHost> host_for(const fs::path& out, std::uint64_t seed, const std::string& dataset) {
  HostOptions o;
  o.results_dir = out.string();
  o.seed = seed;
  o.config = std::make_shared<const Value>(parse_toml("[dataset]\nplugin = \"" + dataset + "\"\n[train]\nlr = 0.1\n", "s.toml"));
  o.logger = [](const std::string&) {};
  return std::make_unique<RunHost>(test_fixtures::basic_registry(), o);
}

std::string make(SharedFile& f, const std::string& content) {
  std::ofstream(f.path()) << content;
  f.publish();
  return f.path();
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_run_makes_the_file_the_others_wait_and_read_it) {
  Folder d;
  auto a = host_for(d.path, 0, "x"), b = host_for(d.path, 0, "x");
  auto first = a->share("router", {"dataset", "train"}, "codes = 128");
  BOOST_TEST_REQUIRE(!first->ready());
  std::atomic<bool> got{false};
  std::unique_ptr<SharedFile> second;
  std::thread waiter([&] {
    second = b->share("router", {"dataset", "train"}, "codes = 128");
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  BOOST_TEST(!got.load());  // blocked on the maker's lock
  const auto path = make(*first, "trained");
  waiter.join();
  BOOST_TEST_REQUIRE(second->ready());
  BOOST_TEST(second->path() == path);
  BOOST_TEST(first->ready());
  std::ifstream in(second->path());
  std::string content;
  in >> content;
  BOOST_TEST(content == "trained");
  BOOST_TEST(fs::path(path).parent_path() == d.path / "shared");
  BOOST_TEST(fs::exists(path + ".identity"));
  BOOST_CHECK_THROW(first->publish(), ArgumentError);
}

BOOST_AUTO_TEST_CASE(the_identity_is_name_seed_config_values_and_extra) {
  Folder d;
  auto path_of = [&](std::uint64_t seed, const std::string& dataset, const std::string& name, const std::string& extra,
                     const std::vector<std::string>& keys) {
    auto f = host_for(d.path, seed, dataset)->share(name, keys, extra);
    return f->ready() ? f->path() : make(*f, "x");
  };
  const auto base = path_of(0, "x", "router", "e", {"dataset", "train"});
  BOOST_TEST(path_of(0, "x", "router", "e", {"dataset", "train"}) == base);
  BOOST_TEST(path_of(1, "x", "router", "e", {"dataset", "train"}) != base);
  BOOST_TEST(path_of(0, "y", "router", "e", {"dataset", "train"}) != base);
  BOOST_TEST(path_of(0, "x", "router", "f", {"dataset", "train"}) != base);
  BOOST_TEST(path_of(0, "x", "other", "e", {"dataset", "train"}) != base);
  BOOST_TEST(path_of(0, "y", "router", "e", {"train"}) == path_of(0, "x", "router", "e", {"train"}));  // dataset not part
  BOOST_CHECK_THROW(host_for(d.path, 0, "x")->share("a/b", {}, ""), ArgumentError);
}

BOOST_AUTO_TEST_CASE(a_maker_that_does_not_publish_hands_over) {
  Folder d;
  auto a = host_for(d.path, 0, "x");
  {
    auto f = a->share("router", {}, "");
    BOOST_TEST_REQUIRE(!f->ready());
    std::ofstream(f->path()) << "half written";
  }  // the run failed: lock released, partial file removed
  auto g = host_for(d.path, 0, "x")->share("router", {}, "");
  BOOST_TEST(!g->ready());
  BOOST_TEST(!fs::exists(g->path()));
  BOOST_CHECK_THROW(g->publish(), OutputError);  // nothing written
}
