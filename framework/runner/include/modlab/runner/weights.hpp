#pragma once
// Reading a run's final weights file (what the trainer writes with Module::save) by dotted name,
// and loading a part of it into a module: the implementation of Host::load_weights.

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/types.h>

#include <map>
#include <string>

namespace modlab::runner {

/// Every parameter and buffer of a file written by torch::nn::Module::save, by dotted name
/// ("experts.layer0.weight"). OutputError when the file cannot be read.
std::map<std::string, torch::Tensor> read_weights_file(const std::string& path);

/// The same for an archive already read (a checkpoint's "model" entry).
std::map<std::string, torch::Tensor> archive_weights(torch::serialize::InputArchive& archive);

/// Copies the tensors of `saved` named `part` + "." + name ("" = all) into `module`'s parameter or
/// buffer `name`. The names and shapes must match exactly; otherwise ConfigError, starting with
/// `source` (e.g. "run 'a_out/same-seed' (a_out/runs/<id>.weights.pt)"), naming the missing and
/// unexpected names and the shape mismatches; `module` is unchanged then.
void load_weights_into(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& saved,
                       const std::string& part, const std::string& source);

}  // namespace modlab::runner
