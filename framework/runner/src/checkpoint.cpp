#include "checkpoint.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/weights.hpp>

#include <torch/torch.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace modlab::runner {

namespace {

void write_strings(torch::serialize::OutputArchive& ar, const std::string& key, const std::vector<std::string>& v) {
  c10::List<std::string> l;
  for (const auto& s : v) l.push_back(s);
  ar.write(key, c10::IValue(l));
}
std::vector<std::string> read_strings(torch::serialize::InputArchive& ar, const std::string& key) {
  c10::IValue v;
  ar.read(key, v);
  std::vector<std::string> out;
  for (const auto& s : v.toListRef()) out.push_back(s.toStringRef());
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, Model& model, torch::optim::Optimizer* opt, const Position& pos,
                     const RunHistory& h) {
  torch::serialize::OutputArchive ar;
  torch::serialize::OutputArchive m;
  model.save(m);
  ar.write("model", m);
  if (opt) {
    torch::serialize::OutputArchive o;
    opt->save(o);
    ar.write("optimizer", o);
  }
  ar.write("position", torch::tensor({pos.phase, pos.epoch, pos.step, pos.global_epoch}, torch::kLong));
  ar.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  ar.write("history.epoch", torch::tensor(h.epoch, torch::kLong));
  ar.write("history.step", torch::tensor(h.step, torch::kLong));
  write_strings(ar, "history.phase", h.phase);
  std::vector<std::string> names;
  for (const auto& [name, vals] : h.metrics) {
    ar.write("history.metric." + std::to_string(names.size()), torch::tensor(vals, torch::kDouble));
    names.push_back(name);
  }
  write_strings(ar, "history.metric_names", names);
  std::vector<std::string> anames;
  for (const auto& [name, dv] : h.appended) {
    std::string k = "history.appended." + std::to_string(anames.size());
    write_strings(ar, k + ".dims", dv.first);
    ar.write(k + ".values", torch::stack(dv.second));
    anames.push_back(name);
  }
  write_strings(ar, "history.appended_names", anames);
  std::vector<std::string> notes;
  for (const auto& [k, v] : h.notes) {
    notes.push_back(k);
    notes.push_back(v);
  }
  write_strings(ar, "history.notes", notes);
  std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  fs::rename(tmp, path);
}

namespace {

// Reads `key` from the archive as a contiguous tensor of `dtype`, naming the key on failure.
torch::Tensor read_tensor(torch::serialize::InputArchive& ar, const std::string& key, torch::Dtype dtype) {
  torch::Tensor t;
  try {
    ar.read(key, t);
  } catch (const std::exception& e) {
    throw OutputError("checkpoint entry '" + key + "': " + std::string(e.what()).substr(0, 200));
  }
  return t.to(dtype).contiguous();
}

template <class T>
std::vector<T> to_vector(const torch::Tensor& t) {
  return std::vector<T>(t.data_ptr<T>(), t.data_ptr<T>() + t.numel());
}

}  // namespace

bool load_checkpoint(const std::string& path, Model& model, Position& pos, RunHistory& h,
                     torch::serialize::InputArchive& opt_state, bool& has_opt) {
  torch::serialize::InputArchive ar;
  ar.load_from(path);
  torch::serialize::InputArchive m;
  ar.read("model", m);
  // Names and shapes checked as for another run's weights (Module::load would take a tensor of
  // another shape as it is); the model is unchanged when they do not fit.
  load_weights_into(model, archive_weights(m), "", "checkpoint " + path);
  has_opt = ar.try_read("optimizer", opt_state);
  auto p = to_vector<std::int64_t>(read_tensor(ar, "position", torch::kLong));
  if (p.size() != 4) throw OutputError("checkpoint entry 'position' has " + std::to_string(p.size()) + " values, expected 4");
  pos = Position{p[0], p[1], p[2], p[3]};
  torch::Tensor rng;
  ar.read("rng", rng);
  at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle: shares the global state
  gen.set_state(rng);
  h.epoch = to_vector<std::int64_t>(read_tensor(ar, "history.epoch", torch::kLong));
  h.step = to_vector<std::int64_t>(read_tensor(ar, "history.step", torch::kLong));
  h.phase = read_strings(ar, "history.phase");
  auto names = read_strings(ar, "history.metric_names");
  for (std::size_t i = 0; i < names.size(); ++i)
    h.metrics[names[i]] = to_vector<double>(read_tensor(ar, "history.metric." + std::to_string(i), torch::kDouble));
  auto anames = read_strings(ar, "history.appended_names");
  for (std::size_t i = 0; i < anames.size(); ++i) {
    std::string k = "history.appended." + std::to_string(i);
    auto dims = read_strings(ar, k + ".dims");
    torch::Tensor t;
    ar.read(k + ".values", t);
    std::vector<torch::Tensor> vals;
    for (std::int64_t j = 0; j < t.size(0); ++j) vals.push_back(t[j].clone());
    h.appended[anames[i]] = {dims, vals};
  }
  auto notes = read_strings(ar, "history.notes");
  for (std::size_t i = 0; i + 1 < notes.size(); i += 2) h.notes[notes[i]] = notes[i + 1];
  return true;
}

}  // namespace modlab::runner
