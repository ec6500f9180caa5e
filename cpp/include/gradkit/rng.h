// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// The library has one generator state: a 64-bit key (the seed) and a 64-bit
// counter offset. A kernel that needs random numbers reserves a range of
// counters with rng_reserve() and then computes block `offset + i` for
// whichever i it needs, on whichever thread: the stream depends only on the
// seed and the order of kernel calls, never on the thread count.
#pragma once
#include <cstdint>

#include "gradkit/common.h"

namespace gk {

struct Philox4x32 {
  std::uint32_t v[4];
};

// One 128-bit block: Philox4x32-10 of counter (ctr_lo, ctr_hi) under `key`.
GK_ALWAYS_INLINE Philox4x32 philox4x32(std::uint64_t key, std::uint64_t ctr_lo, std::uint64_t ctr_hi = 0) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  std::uint32_t c0 = static_cast<std::uint32_t>(ctr_lo), c1 = static_cast<std::uint32_t>(ctr_lo >> 32);
  std::uint32_t c2 = static_cast<std::uint32_t>(ctr_hi), c3 = static_cast<std::uint32_t>(ctr_hi >> 32);
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c2;
    const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<std::uint32_t>(p1);
    c3 = static_cast<std::uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) from 24 random bits (exactly representable in float).
GK_ALWAYS_INLINE float uint_to_unit_float(std::uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
// Uniform in [0, 1) from 53 random bits.
GK_ALWAYS_INLINE double uint_to_unit_double(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = (static_cast<std::uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(bits & ((std::uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

struct RngState {
  std::uint64_t seed;
  std::uint64_t offset;  // next free counter
};

void manual_seed(std::uint64_t seed);
RngState rng_state();
void set_rng_state(RngState state);
// Reserves `nblocks` counters and returns the generator key and the first counter.
RngState rng_reserve(std::uint64_t nblocks);

// Fill kernels: element i draws from counter `first + i / per_block`, so the
// values do not depend on the thread count.
template <class T>
void rng_uniform(T* out, index_t n, T low, T high);
template <class T>
void rng_normal(T* out, index_t n, T mean, T stddev);
void rng_bits(std::uint32_t* out, index_t n);

}  // namespace gk
