#pragma once
/// @file numpy_random.hpp
/// numpy's legacy `RandomState` (MT19937) re-implemented draw for draw, so that the toy data sets
/// are the points the reference generators produce for the same integer seed. Only what the toy
/// generators need: integer seeding, random_sample, uniform, randint (masked rejection), shuffle
/// and the legacy polar Box-Muller gauss with its cached second value.

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace modlab::toy {

/// The generator behind `numpy.random.RandomState(seed)` for an integer seed in [0, 2^32).
class NumpyRandomState {
 public:
  explicit NumpyRandomState(std::uint32_t seed) { seed_state(seed); }

  /// `init_genrand`: what numpy does for an integer seed.
  void seed_state(std::uint32_t seed) {
    for (std::size_t i = 0; i < kN; ++i) {
      key_[i] = seed;
      seed = 1812433253u * (seed ^ (seed >> 30)) + static_cast<std::uint32_t>(i) + 1u;
    }
    pos_ = kN;
    has_gauss_ = false;
    gauss_ = 0.0;
  }

  /// One tempered 32-bit output of MT19937.
  std::uint32_t next_uint32() {
    if (pos_ >= kN) twist();
    std::uint32_t y = key_[pos_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

  /// `random_sample()`: a 53-bit double in [0, 1) from two 32-bit draws.
  double random_sample() {
    const std::uint32_t a = next_uint32() >> 5;
    const std::uint32_t b = next_uint32() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

  /// `uniform(low, high)` = low + (high − low)·random_sample().
  double uniform(double low, double high) { return low + (high - low) * random_sample(); }

  /// `randint(n)` for 0 < n ≤ 2^32: masked rejection sampling on 32-bit draws, as the legacy
  /// generator does (not Lemire's method).
  std::uint32_t randint(std::uint64_t n) { return interval(static_cast<std::uint32_t>(n - 1)); }

  /// A value in [0, max] by masked rejection (numpy's `random_interval`, used by shuffle).
  std::uint32_t interval(std::uint32_t max) {
    if (max == 0) return 0;
    std::uint32_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    std::uint32_t v;
    while ((v = (next_uint32() & mask)) > max) {
    }
    return v;
  }

  /// `standard_normal()` of the legacy generator: polar Box-Muller returning f·x2 and caching f·x1.
  double gauss() {
    if (has_gauss_) {
      has_gauss_ = false;
      const double g = gauss_;
      gauss_ = 0.0;
      return g;
    }
    double x1, x2, r2;
    do {
      x1 = 2.0 * random_sample() - 1.0;
      x2 = 2.0 * random_sample() - 1.0;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    gauss_ = f * x1;
    has_gauss_ = true;
    return f * x2;
  }

  /// `normal(loc, scale)` = loc + scale·gauss().
  double normal(double loc, double scale) { return loc + scale * gauss(); }

  /// In-place `shuffle` of a sequence (Fisher-Yates from the back, as numpy's legacy shuffle).
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (std::size_t i = v.size(); i > 1; --i) {
      const std::size_t j = interval(static_cast<std::uint32_t>(i - 1));
      std::swap(v[i - 1], v[j]);
    }
  }

 private:
  static constexpr std::size_t kN = 624;
  static constexpr std::size_t kM = 397;

  void twist() {
    for (std::size_t i = 0; i < kN; ++i) {
      const std::uint32_t y = (key_[i] & 0x80000000u) | (key_[(i + 1) % kN] & 0x7fffffffu);
      key_[i] = key_[(i + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    pos_ = 0;
  }

  std::array<std::uint32_t, kN> key_{};
  std::size_t pos_ = kN;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace modlab::toy
