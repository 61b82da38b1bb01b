#pragma once
// The clustering of the latent router (goe §2.3): k-means with k-means++ restarts on the training
// embeddings, and the balanced recursive 2-means that gives every leaf of the tree one cluster.

#include <torch/types.h>

#include <cstdint>

namespace modlab::goe {

struct KMeansResult {
  torch::Tensor centres;  ///< [k, dim] float32
  torch::Tensor labels;   ///< [n] int64
  double inertia = 0.0;   ///< sum of squared distances to the nearest centre
  std::int64_t iterations = 0;
};

/// k-means of the rows of `x` [n, dim]: k-means++ seeding, Lloyd iterations until the centres move
/// less than `tol` × the mean feature variance (sklearn's rule) or `max_iter`; an empty cluster is
/// given the point farthest from its centre. The best of `restarts` runs (lowest inertia), drawn
/// from a generator seeded `seed`. Computed in float64.
KMeansResult kmeans(const torch::Tensor& x, std::int64_t k, std::int64_t restarts, std::int64_t max_iter,
                    std::uint64_t seed, double tol = 1e-4);

/// Index of the nearest of `centres` [k, dim] for each row of `x` [n, dim] (ties: the lowest index).
torch::Tensor nearest(const torch::Tensor& x, const torch::Tensor& centres);

/// The leaf of each of the 2^b cluster centres [2^b, dim]: the centres are split in two by
/// 2-means (seeded `seed`, 10 restarts), the larger side giving its points farthest from its centre
/// to the other until both hold half, and each half is split again, b levels deep. Every leaf gets
/// exactly one centre, also for duplicate centres or a 2-means with an empty side. The first split
/// decides the root bit (`reference_order` false) or, as the reference accumulates its index
/// least-significant bit first, the deepest bit (true). Returns int64 [2^b], a permutation of
/// 0 … 2^b − 1.
torch::Tensor balanced_leaves(const torch::Tensor& centres, std::uint64_t seed, bool reference_order);

}  // namespace modlab::goe
