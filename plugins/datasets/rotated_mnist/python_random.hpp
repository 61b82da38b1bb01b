#pragma once
/// @file python_random.hpp
/// Python's `random.Random(seed).shuffle` (CPython 3: MT19937 seeded by `init_by_array` with the
/// 32-bit words of |seed|, `_randbelow` by rejection on `getrandbits(n.bit_length())`),
/// re-implemented draw for draw, so the digit-pair split (hier_modular §5.2) is the reference's for
/// the same integer seed. Header-only and free of LibTorch.

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace modlab::mnist {

/// The generator behind `random.Random(seed)` for a non-negative integer seed.
class PythonRandom {
 public:
  explicit PythonRandom(std::uint64_t seed) {
    std::vector<std::uint32_t> key;
    do {  // 32-bit words of the seed, least significant first; [0] for seed 0
      key.push_back(static_cast<std::uint32_t>(seed & 0xffffffffu));
      seed >>= 32;
    } while (seed != 0);
    init_by_array(key);
  }

  /// One tempered 32-bit output of MT19937 (`genrand_uint32`).
  std::uint32_t next_uint32() {
    if (pos_ >= kN) twist();
    std::uint32_t y = mt_[pos_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

  /// `getrandbits(k)` for 1 <= k <= 32.
  std::uint32_t getrandbits(int k) { return next_uint32() >> (32 - k); }

  /// `_randbelow(n)` for 1 <= n < 2^32: rejection sampling on n.bit_length() bits.
  std::uint32_t randbelow(std::uint32_t n) {
    int k = 0;
    for (std::uint32_t v = n; v != 0; v >>= 1) ++k;
    std::uint32_t r = getrandbits(k);
    while (r >= n) r = getrandbits(k);
    return r;
  }

  /// `shuffle(x)`: Fisher-Yates from the end, j = _randbelow(i + 1).
  template <class T>
  void shuffle(std::vector<T>& x) {
    for (std::size_t i = x.size(); i-- > 1;) {
      const std::size_t j = randbelow(static_cast<std::uint32_t>(i + 1));
      std::swap(x[i], x[j]);
    }
  }

 private:
  static constexpr std::size_t kN = 624, kM = 397;

  void init_genrand(std::uint32_t s) {
    mt_[0] = s;
    for (std::size_t i = 1; i < kN; ++i)
      mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<std::uint32_t>(i);
    pos_ = kN;
  }

  void init_by_array(const std::vector<std::uint32_t>& key) {
    init_genrand(19650218u);
    std::size_t i = 1, j = 0;
    const std::size_t n = key.size();
    for (std::size_t k = kN > n ? kN : n; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + static_cast<std::uint32_t>(j);
      ++i, ++j;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
      if (j >= n) j = 0;
    }
    for (std::size_t k = kN - 1; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - static_cast<std::uint32_t>(i);
      ++i;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000u;
    pos_ = kN;
  }

  void twist() {
    for (std::size_t k = 0; k < kN; ++k) {
      const std::uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % kN] & 0x7fffffffu);
      mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    pos_ = 0;
  }

  std::array<std::uint32_t, kN> mt_{};
  std::size_t pos_ = kN;
};

}  // namespace modlab::mnist
