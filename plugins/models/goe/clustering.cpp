#include "clustering.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace modlab::goe {

namespace {

/// Squared distances [n, k] of the rows of x to the centres.
torch::Tensor sq_distances(const torch::Tensor& x, const torch::Tensor& c) {
  const auto xx = x.pow(2).sum(1, true), cc = c.pow(2).sum(1).unsqueeze(0);
  return torch::addmm(xx + cc, x, c.t(), 1.0, -2.0).clamp_min_(0.0);
}

/// k-means++ seeding: the first centre uniform, each next one drawn with probability ∝ D².
torch::Tensor seed_centres(const torch::Tensor& x, std::int64_t k, at::Generator& gen) {
  const auto n = x.size(0);
  std::vector<std::int64_t> chosen{torch::randint(n, {1}, gen, torch::kLong).item<std::int64_t>()};
  auto d2 = sq_distances(x, x.index_select(0, torch::tensor(chosen))).squeeze(1);
  while (static_cast<std::int64_t>(chosen.size()) < k) {
    const double total = d2.sum().item<double>();
    // All remaining points coincide with a centre: take any (duplicate inputs).
    const auto w = total > 0 ? d2 : torch::ones_like(d2);
    const auto next = torch::multinomial(w, 1, false, gen).item<std::int64_t>();
    chosen.push_back(next);
    d2 = torch::minimum(d2, sq_distances(x, x.index_select(0, torch::tensor({next}))).squeeze(1));
  }
  return x.index_select(0, torch::tensor(chosen)).clone();
}

KMeansResult lloyd(const torch::Tensor& x, torch::Tensor centres, std::int64_t max_iter, double tol) {
  const auto k = centres.size(0);
  KMeansResult r;
  for (r.iterations = 1; r.iterations <= max_iter; ++r.iterations) {
    const auto d2 = sq_distances(x, centres);
    const auto [best, labels] = d2.min(1);
    auto sums = torch::zeros_like(centres).index_add_(0, labels, x);
    auto counts = torch::bincount(labels, {}, k).to(x.dtype());
    auto next = sums / counts.clamp_min(1).unsqueeze(1);
    for (std::int64_t j = 0; j < k; ++j)
      if (counts[j].item<double>() == 0) {
        // An empty cluster takes the point farthest from its centre.
        const auto far = best.argmax().item<std::int64_t>();
        next[j] = x[far];
        best[far] = 0;
      }
    const double shift = (next - centres).pow(2).sum().item<double>();
    centres = next;
    if (shift <= tol) break;
  }
  r.iterations = std::min(r.iterations, max_iter);
  const auto [best, labels] = sq_distances(x, centres).min(1);
  r.centres = centres;
  r.labels = labels;
  r.inertia = best.sum().item<double>();
  return r;
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& x_in, std::int64_t k, std::int64_t restarts, std::int64_t max_iter,
                    std::uint64_t seed, double tol) {
  if (x_in.dim() != 2 || x_in.size(0) < k || k < 1)
    throw std::invalid_argument("kmeans: need at least k = " + std::to_string(k) + " rows of a 2-D tensor, got " +
                                std::to_string(x_in.dim() == 2 ? x_in.size(0) : 0));
  torch::NoGradGuard ng;
  const auto x = x_in.to(torch::kCPU, torch::kDouble).contiguous();
  const double threshold = tol * x.var(0, /*unbiased=*/false).mean().item<double>();
  auto gen = at::detail::createCPUGenerator(seed);
  KMeansResult best;
  best.inertia = std::numeric_limits<double>::infinity();
  for (std::int64_t r = 0; r < std::max<std::int64_t>(1, restarts); ++r) {
    auto run = lloyd(x, seed_centres(x, k, gen), max_iter, threshold);
    if (run.inertia < best.inertia) best = std::move(run);
  }
  best.centres = best.centres.to(torch::kFloat);
  return best;
}

torch::Tensor nearest(const torch::Tensor& x, const torch::Tensor& centres) {
  return std::get<1>(sq_distances(x, centres.to(x.dtype())).min(1));
}

namespace {

/// Splits `ids` (rows of `centres`) into two equal halves by 2-means, moving the points of the
/// larger side farthest from its centre across.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> balanced_halves(const torch::Tensor& centres,
                                                                                const std::vector<std::int64_t>& ids,
                                                                                std::uint64_t seed) {
  const auto pts = centres.index_select(0, torch::tensor(ids)).to(torch::kDouble);
  const auto km = kmeans(pts, 2, 10, 300, seed);
  const auto labels = km.labels.contiguous();
  const auto d2 = sq_distances(pts, km.centres.to(torch::kDouble));
  std::vector<std::int64_t> side[2];
  for (std::size_t i = 0; i < ids.size(); ++i) side[labels[static_cast<std::int64_t>(i)].item<std::int64_t>()].push_back(static_cast<std::int64_t>(i));
  const std::size_t half = ids.size() / 2;
  for (int big : {0, 1}) {
    while (side[big].size() > half) {
      // the point of the larger side farthest from its own centre (first of equals)
      std::size_t far = 0;
      for (std::size_t j = 1; j < side[big].size(); ++j)
        if (d2[side[big][j]][big].item<double>() > d2[side[big][far]][big].item<double>()) far = j;
      side[1 - big].push_back(side[big][far]);
      side[big].erase(side[big].begin() + static_cast<std::ptrdiff_t>(far));
    }
  }
  std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> out;
  for (auto i : side[0]) out.first.push_back(ids[static_cast<std::size_t>(i)]);
  for (auto i : side[1]) out.second.push_back(ids[static_cast<std::size_t>(i)]);
  return out;
}

void assign_leaves(const torch::Tensor& centres, const std::vector<std::int64_t>& ids, std::int64_t prefix,
                   std::uint64_t seed, std::vector<std::int64_t>& leaf) {
  if (ids.size() == 1) {
    leaf[static_cast<std::size_t>(ids.front())] = prefix;
    return;
  }
  auto [left, right] = balanced_halves(centres, ids, seed);
  assign_leaves(centres, left, prefix * 2, seed, leaf);
  assign_leaves(centres, right, prefix * 2 + 1, seed, leaf);
}

}  // namespace

torch::Tensor balanced_leaves(const torch::Tensor& centres, std::uint64_t seed, bool reference_order) {
  const auto k = centres.size(0);
  std::int64_t bits = 0;
  while ((std::int64_t{1} << bits) < k) ++bits;
  if ((std::int64_t{1} << bits) != k)
    throw std::invalid_argument("balanced_leaves: " + std::to_string(k) + " centres is not a power of two");
  torch::NoGradGuard ng;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(k)), leaf(static_cast<std::size_t>(k), 0);
  for (std::int64_t i = 0; i < k; ++i) ids[static_cast<std::size_t>(i)] = i;
  if (k > 1) assign_leaves(centres.to(torch::kCPU), ids, 0, seed, leaf);
  if (reference_order)
    for (auto& l : leaf) {
      std::int64_t rev = 0;
      for (std::int64_t b = 0; b < bits; ++b) rev |= ((l >> b) & 1) << (bits - 1 - b);
      l = rev;
    }
  return torch::tensor(leaf, torch::kLong);
}

}  // namespace modlab::goe
