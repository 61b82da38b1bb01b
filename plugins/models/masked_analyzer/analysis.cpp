// Mask configurations, their accuracy table and the statistics between masks (see analysis.hpp).
#include "analysis.hpp"

#include "subtasks.hpp"

#include <modlab/nn/layers.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>

namespace modlab::masked {
namespace {

/// Configurations evaluated in one folded forward: bounds the activations to a few copies of a batch.
constexpr std::size_t kConfigsPerPass = 4;

/// The first and last masked parameters that are weights (rank ≥ 2): the input and output layers.
std::vector<std::size_t> io_params(const std::vector<MaskedParam>& params) {
  std::vector<std::size_t> w;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (params[i].weight.dim() >= 2) w.push_back(i);
  if (w.size() <= 1) return w;
  return {w.front(), w.back()};
}

/// Layer index of every masked parameter (its module, in order of first appearance).
std::vector<std::size_t> layer_index(const std::vector<MaskedParam>& params, std::size_t& layers) {
  std::vector<std::string> seen;
  std::vector<std::size_t> out;
  for (const auto& p : params) {
    auto it = std::find(seen.begin(), seen.end(), p.layer);
    if (it == seen.end()) it = seen.insert(seen.end(), p.layer);
    out.push_back(static_cast<std::size_t>(it - seen.begin()));
  }
  layers = seen.size();
  return out;
}

Batch repeat_rows(const Batch& b, std::int64_t n) {
  auto rep = [n](const torch::Tensor& t) {
    if (!t.defined()) return t;
    std::vector<std::int64_t> r(static_cast<std::size_t>(t.dim()), 1);
    r[0] = n;
    return t.repeat(r);
  };
  return Batch{rep(b.inputs),         rep(b.targets), rep(b.groups), rep(b.lengths),
               rep(b.target_lengths), rep(b.indices), rep(b.subtask_targets)};
}

double ratio(double a, double b) { return b > 0 ? a / b : std::nan(""); }

}  // namespace

std::vector<MaskConfig> analysis_configs(const std::vector<MaskedParam>& params, const StageMasks& stages,
                                         bool inverse_keeps_io) {
  std::vector<torch::Tensor> ones;
  for (const auto& p : params) ones.push_back(torch::ones_like(p.weight, torch::kBool));
  std::vector<MaskConfig> out{{"trained", ones}};
  for (std::size_t s = 0; s < stages.names.size(); ++s) out.push_back({"mask " + stages.names[s], stages.masks[s]});
  const auto io = io_params(params);
  for (std::size_t s = 0; s < stages.names.size(); ++s) {
    MaskConfig inv{"inverse " + stages.names[s], {}};
    for (const auto& m : stages.masks[s]) inv.masks.push_back(m.logical_not());
    if (inverse_keeps_io && stages.control >= 0)
      for (auto i : io) inv.masks[i] = stages.masks[static_cast<std::size_t>(stages.control)][i];
    out.push_back(std::move(inv));
  }
  if (stages.control < 0) return out;
  std::size_t layers = 0;
  const auto layer = layer_index(params, layers);
  const std::size_t first = (layers + 1) / 2;
  const auto& control = stages.masks[static_cast<std::size_t>(stages.control)];
  MaskConfig half_first{"half first", ones}, half_second{"half second", ones};
  for (std::size_t i = 0; i < params.size(); ++i) (layer[i] < first ? half_first : half_second).masks[i] = control[i];
  out.push_back(std::move(half_first));
  out.push_back(std::move(half_second));
  return out;
}

AccuracyTally::AccuracyTally(std::vector<MaskConfig> configs, std::vector<Column> columns, std::size_t subtasks)
    : configs_(std::move(configs)),
      columns_(std::move(columns)),
      subtasks_(subtasks),
      correct_(configs_.size() * columns_.size(), 0.0),
      seen_(columns_.size(), 0.0),
      confusion_(configs_.size() * columns_.size() * (subtasks + 1), 0.0) {}

void AccuracyTally::add(Model& inner, const std::vector<MaskedParam>& params, const Batch& batch) {
  for (std::size_t col = 0; col < columns_.size(); ++col) {
    const SubTask* t = columns_[col].task;
    const Batch b = t ? restrict_batch(batch, *t) : batch;
    if (b.size() == 0) continue;
    seen_[col] += static_cast<double>(b.size());
    add_column(inner, params, b, col);
  }
}

void AccuracyTally::add_column(Model& inner, const std::vector<MaskedParam>& params, const Batch& b, std::size_t col) {
  const std::int64_t B = b.size();
  const std::size_t S1 = subtasks_ + 1;
  for (std::size_t c0 = 0; c0 < configs_.size(); c0 += kConfigsPerPass) {
    const std::size_t n = std::min(kConfigsPerPass, configs_.size() - c0);
    std::vector<std::vector<torch::Tensor>> chunk;
    for (std::size_t c = c0; c < c0 + n; ++c) chunk.push_back(configs_[c].masks);
    Batch rep = repeat_rows(b, static_cast<std::int64_t>(n));
    modlab::nn::OverrideScope scope(inner, stacked_overrides(params, chunk));
    Output out = inner.forward(rep);
    if (columns_[col].task) restrict_outputs(*columns_[col].task, rep, out);
    const auto hits = inner.correct(rep, out).reshape({static_cast<std::int64_t>(n), B, -1}).mean(2).sum(1).cpu();
    for (std::size_t c = 0; c < n; ++c) correct_[(c0 + c) * columns_.size() + col] += hits[static_cast<std::int64_t>(c)].item<double>();
    if (!rep.subtask_targets.defined() || rep.targets.scalar_type() != torch::kLong) continue;
    has_confusion_ = true;
    auto pred = out.prediction.argmax(-1).unsqueeze(1);  // [nB, 1(, O)]
    auto match = pred == rep.subtask_targets;             // [nB, S(, O)]
    if (match.dim() == 3) match = match.all(2);
    match = match.to(torch::kDouble).reshape({static_cast<std::int64_t>(n), B, -1});
    const auto per = match.sum(1).cpu();                                  // [n, S]
    const auto neither = (match.sum(2) == 0).to(torch::kDouble).sum(1).cpu();  // [n]
    for (std::size_t c = 0; c < n; ++c) {
      double* row = &confusion_[((c0 + c) * columns_.size() + col) * S1];
      for (std::size_t s = 0; s < subtasks_ && s < static_cast<std::size_t>(per.size(1)); ++s)
        row[s] += per[static_cast<std::int64_t>(c)][static_cast<std::int64_t>(s)].item<double>();
      row[subtasks_] += neither[static_cast<std::int64_t>(c)].item<double>();
    }
  }
}

double AccuracyTally::accuracy(std::size_t config, std::size_t column) const {
  return ratio(correct_[config * columns_.size() + column], seen_[column]);
}

void AccuracyTally::record(const std::string& split, const std::vector<std::string>& subtask_names,
                           Recorder& recorder) const {
  std::vector<std::string> rows, cols;
  for (const auto& c : configs_) rows.push_back(c.label);
  for (const auto& c : columns_) cols.push_back(c.label);
  auto acc = torch::empty({static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(cols.size())}, torch::kDouble);
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < cols.size(); ++c)
      acc[static_cast<std::int64_t>(r)][static_cast<std::int64_t>(c)] = accuracy(r, c);
  recorder.table(split + "/accuracy", acc, rows, cols);
  if (!has_confusion_) return;
  std::vector<std::string> crow, ccol;
  for (const auto& s : subtask_names) ccol.push_back("= " + s);
  ccol.push_back("neither");
  std::vector<double> values;
  for (std::size_t r = 0; r < configs_.size(); ++r)
    for (std::size_t c = 0; c < columns_.size(); ++c) {
      if (!columns_[c].task) continue;
      crow.push_back(configs_[r].label + " | " + columns_[c].label);
      for (std::size_t s = 0; s <= subtasks_; ++s)
        values.push_back(ratio(confusion_[(r * columns_.size() + c) * (subtasks_ + 1) + s], seen_[c]));
    }
  auto t = torch::tensor(values, torch::kDouble).reshape({static_cast<std::int64_t>(crow.size()), -1});
  recorder.table(split + "/confusion", t, crow, ccol);
}

namespace {

/// A [params + 1, columns] table whose cells are num/den per parameter, the last row sums of both.
void ratio_table(Recorder& rec, const std::string& name, const std::vector<MaskedParam>& params,
                 const std::vector<std::string>& cols,
                 const std::function<std::pair<double, double>(std::size_t param, std::size_t col)>& cell) {
  std::vector<std::string> rows;
  for (const auto& p : params) rows.push_back(p.name);
  rows.push_back("total");
  auto t = torch::empty({static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(cols.size())}, torch::kDouble);
  for (std::size_t c = 0; c < cols.size(); ++c) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto [a, b] = cell(i, c);
      t[static_cast<std::int64_t>(i)][static_cast<std::int64_t>(c)] = ratio(a, b);
      num += a;
      den += b;
    }
    t[static_cast<std::int64_t>(params.size())][static_cast<std::int64_t>(c)] = ratio(num, den);
  }
  rec.table(name, t, rows, cols);
}

double count(const torch::Tensor& m) { return m.sum().item<double>(); }

/// `member_kept`: for parameters of stacked layers (experts, modules), the fraction of each member's
/// weights each stage keeps: does a sub-task live in one expert?
void record_member_kept(const std::vector<MaskedParam>& params, const StageMasks& st, Recorder& rec) {
  std::vector<std::string> rows;
  std::vector<double> values;
  for (std::size_t i = 0; i < params.size(); ++i)
    for (std::int64_t e = 0; e < params[i].members; ++e) {
      rows.push_back(params[i].name + "[" + std::to_string(e) + "]");
      for (const auto& stage : st.masks) values.push_back(stage[i][e].to(torch::kDouble).mean().item<double>());
    }
  if (rows.empty()) return;
  const auto t = torch::tensor(values, torch::kDouble).reshape({static_cast<std::int64_t>(rows.size()), -1});
  rec.table("member_kept", t, rows, st.names);
}

}  // namespace

void record_mask_statistics(const std::vector<MaskedParam>& params, const StageMasks& st, Recorder& rec) {
  const auto& M = st.masks;
  const std::size_t S = st.names.size();
  ratio_table(rec, "kept", params, st.names, [&](std::size_t i, std::size_t s) {
    return std::make_pair(count(M[s][i]), static_cast<double>(M[s][i].numel()));
  });
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  std::vector<std::string> pair_names;
  for (std::size_t a = 0; a < S; ++a)
    for (std::size_t b = a + 1; b < S; ++b) {
      pairs.emplace_back(a, b);
      pair_names.push_back(st.names[a] + " ~ " + st.names[b]);
    }
  if (!pairs.empty()) {
    ratio_table(rec, "iou", params, pair_names, [&](std::size_t i, std::size_t p) {
      const auto& a = M[pairs[p].first][i];
      const auto& b = M[pairs[p].second][i];
      return std::make_pair(count(a & b), count(a | b));
    });
    ratio_table(rec, "iomin", params, pair_names, [&](std::size_t i, std::size_t p) {
      const auto& a = M[pairs[p].first][i];
      const auto& b = M[pairs[p].second][i];
      return std::make_pair(count(a & b), std::min(count(a), count(b)));
    });
  }
  // Sharing is measured between the sub-task masks; the control mask joins only when there is a
  // single sub-task (then it is the one other mask).
  std::vector<std::size_t> group;
  for (std::size_t s = 0; s < S; ++s)
    if (static_cast<int>(s) != st.control) group.push_back(s);
  if (group.size() < 2) {
    group.clear();
    for (std::size_t s = 0; s < S; ++s) group.push_back(s);
  }
  if (group.size() >= 2) {
    std::vector<std::string> names;
    for (auto s : group) names.push_back(st.names[s]);
    ratio_table(rec, "shared", params, names, [&](std::size_t i, std::size_t g) {
      auto others = torch::zeros_like(M[group[g]][i]);
      for (auto s : group)
        if (s != group[g]) others = others | M[s][i];
      return std::make_pair(count(M[group[g]][i] & others), count(M[group[g]][i]));
    });
  }
  record_member_kept(params, st, rec);
  if (st.control < 0) return;
  const auto& C = M[static_cast<std::size_t>(st.control)];
  std::vector<std::string> names;
  std::vector<std::size_t> sub;
  for (std::size_t s = 0; s < S; ++s)
    if (static_cast<int>(s) != st.control) names.push_back(st.names[s]), sub.push_back(s);
  if (!sub.empty())
    ratio_table(rec, "control_kept", params, names, [&](std::size_t i, std::size_t k) {
      return std::make_pair(count(M[sub[k]][i] & C[i]), count(C[i]));
    });
}

void record_sequential_sharing(const std::vector<MaskedParam>& params, const StageMasks& st, Recorder& rec) {
  const auto& M = st.masks;
  if (M.size() < 2) return;
  std::vector<std::string> names(st.names.begin() + 1, st.names.end());
  ratio_table(rec, "sequential_shared", params, names, [&](std::size_t i, std::size_t k) {
    auto earlier = torch::zeros_like(M[0][i]);
    for (std::size_t e = 0; e <= k; ++e) earlier = earlier | M[e][i];
    return std::make_pair(count(M[k + 1][i] & earlier), count(M[k + 1][i]));
  });
}

}  // namespace modlab::masked
