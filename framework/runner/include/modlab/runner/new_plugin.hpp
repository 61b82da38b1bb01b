#pragma once
// `modlab new-plugin`: a plugin folder to start from, which builds against an installed modlab,
// passes the plugin contract test, and trains in the sweep that comes with it.

#include <string>
#include <vector>

namespace modlab::runner {

/// Writes DIR/{CMakeLists.txt, NAME.cpp, sweep.toml, README.md} for a model plugin (an MLP
/// classifier, trained on the toy dataset by its sweep) or a dataset plugin (2-D spirals, trained
/// with the `mlp` model). `kind` is "model" or "dataset"; `name` a lower-case C++ identifier.
/// ConfigError for a bad name or kind, or a DIR that exists and is not empty. Returns the paths written.
std::vector<std::string> write_new_plugin(const std::string& name, const std::string& kind, const std::string& dir);

}  // namespace modlab::runner
