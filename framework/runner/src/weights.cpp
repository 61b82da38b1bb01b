#include <modlab/errors.hpp>
#include <modlab/runner/weights.hpp>

#include <torch/serialize.h>
#include <torch/torch.h>

#include <set>
#include <sstream>
#include <vector>

namespace modlab::runner {

namespace {

// Module::save writes a module's parameters and buffers as tensors and each child as a nested
// archive; anything else in an archive (e.g. the `training` flag) is not a weight.
void collect(torch::serialize::InputArchive& ar, const std::string& prefix, std::map<std::string, torch::Tensor>& out) {
  for (const auto& key : ar.keys()) {
    torch::Tensor t;
    torch::serialize::InputArchive child;
    if (ar.try_read(key, t)) out[prefix + key] = t;
    else if (ar.try_read(key, child)) collect(child, prefix + key + ".", out);
  }
}

std::string shape_text(const torch::Tensor& t) {
  std::ostringstream os;
  os << "[";
  for (std::int64_t d = 0; d < t.dim(); ++d) os << (d ? ", " : "") << t.size(d);
  os << "]";
  return os.str();
}

// "a, b, c" with at most `limit` names, then "and N more".
std::string name_list(const std::vector<std::string>& names, std::size_t limit = 6) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += " and " + std::to_string(names.size() - limit) + " more";
  return s;
}

// The top-level names of `saved` ("experts", "gate", "expert_mask"), for an error message.
std::string top_level_names(const std::map<std::string, torch::Tensor>& saved) {
  std::set<std::string> tops;
  for (const auto& [name, t] : saved) tops.insert(name.substr(0, name.find('.')));
  return name_list(std::vector<std::string>(tops.begin(), tops.end()), 12);
}

std::map<std::string, torch::Tensor> module_tensors(torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& kv : module.named_parameters(/*recurse=*/true)) out[kv.key()] = kv.value();
  for (const auto& kv : module.named_buffers(/*recurse=*/true)) out[kv.key()] = kv.value();
  return out;
}

}  // namespace

std::map<std::string, torch::Tensor> read_weights_file(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const std::exception& e) {
    std::string why = e.what();
    throw OutputError("cannot read the weights file " + path + ": " + why.substr(0, why.find('\n')));
  }
  return archive_weights(ar);
}

std::map<std::string, torch::Tensor> archive_weights(torch::serialize::InputArchive& archive) {
  std::map<std::string, torch::Tensor> out;
  collect(archive, "", out);
  return out;
}

void load_weights_into(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& saved,
                       const std::string& part, const std::string& source) {
  const std::string prefix = part.empty() ? "" : part + ".";
  std::map<std::string, torch::Tensor> from;  // by the module's names
  for (const auto& [name, t] : saved)
    if (name.compare(0, prefix.size(), prefix) == 0) from[name.substr(prefix.size())] = t;
  const std::string where = part.empty() ? "the model" : "'" + part + "'";
  if (from.empty())
    throw ConfigError(source + " has no weights under " + where + " (it has: " + top_level_names(saved) + ")");

  auto into = module_tensors(module);
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, t] : into) {
    auto it = from.find(name);
    if (it == from.end()) missing.push_back(prefix + name);
    else if (it->second.sizes() != t.sizes())
      mismatched.push_back(prefix + name + " is " + shape_text(it->second) + " there, " + shape_text(t) + " here");
  }
  for (const auto& [name, t] : from)
    if (!into.count(name)) unexpected.push_back(prefix + name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = source + ": its weights of " + where + " do not fit this model (another architecture?):";
    if (!mismatched.empty()) msg += " shapes differ: " + name_list(mismatched) + ";";
    if (!missing.empty()) msg += " missing there: " + name_list(missing) + ";";
    if (!unexpected.empty()) msg += " not in this model: " + name_list(unexpected) + ";";
    msg.pop_back();
    throw ConfigError(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : into) t.copy_(from.at(name));
}

}  // namespace modlab::runner
