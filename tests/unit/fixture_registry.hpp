// The fixture plugins of tests/fixtures/basic.cpp (fixture_blobs, fixture_mlp, fixture_wrapper) in a
// registry of their own, loaded once per test process (plugins are never unloaded).
#pragma once

#include <modlab/runner/registry.hpp>

#include <string>

namespace test_fixtures {

inline modlab::runner::Registry& basic_registry() {
  static auto* r = [] {
    auto* x = new modlab::runner::Registry();
    x->load_file(std::string(MODLAB_FIXTURE_PLUGIN_DIR) + "/basic/fixture_basic.so");
    return x;
  }();
  return *r;
}

}  // namespace test_fixtures
