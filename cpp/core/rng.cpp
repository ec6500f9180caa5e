// The generator state and the fill kernels (uniform, normal, raw bits).
#include "gradkit/rng.h"

#include <cmath>
#include <mutex>

#include "gradkit/parallel.h"

namespace gk {
namespace {

// PyTorch's default CPU seed, so an unseeded run is still reproducible.
constexpr std::uint64_t kDefaultSeed = 67280421310721ull;

std::mutex g_mutex;
RngState g_state{kDefaultSeed, 0};

}  // namespace

void manual_seed(std::uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_state = {seed, 0};
}

RngState rng_state() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_state;
}

void set_rng_state(RngState state) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_state = state;
}

RngState rng_reserve(std::uint64_t nblocks) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const RngState out = g_state;
  g_state.offset += nblocks;
  return out;
}

// out (n,); one Philox block per 4 values (float) or 2 values (double).
template <class T>
void rng_uniform(T* out, index_t n, T low, T high) {
  constexpr index_t per_block = sizeof(T) == 4 ? 4 : 2;
  const index_t nblocks = ceil_div(n, per_block);
  const RngState s = rng_reserve(static_cast<std::uint64_t>(nblocks));
  const T scale = high - low;
  parallel_for(nblocks, n * 8, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const Philox4x32 r = philox4x32(s.seed, s.offset + static_cast<std::uint64_t>(b));
      for (index_t k = 0; k < per_block && b * per_block + k < n; ++k) {
        T u;
        if constexpr (sizeof(T) == 4) {
          u = uint_to_unit_float(r.v[k]);
        } else {
          u = uint_to_unit_double(r.v[2 * k], r.v[2 * k + 1]);
        }
        out[b * per_block + k] = low + scale * u;
      }
    }
  });
}

// out (n,); Box-Muller: each Philox block gives 2 pairs (float) or 1 pair (double).
template <class T>
void rng_normal(T* out, index_t n, T mean, T stddev) {
  constexpr index_t per_block = sizeof(T) == 4 ? 4 : 2;
  const index_t nblocks = ceil_div(n, per_block);
  const RngState s = rng_reserve(static_cast<std::uint64_t>(nblocks));
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  parallel_for(nblocks, n * 32, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const Philox4x32 r = philox4x32(s.seed, s.offset + static_cast<std::uint64_t>(b));
      double z[4];
      for (int pair = 0; pair < per_block / 2; ++pair) {
        double u1, u2;
        if constexpr (sizeof(T) == 4) {
          u1 = uint_to_unit_float(r.v[2 * pair]);
          u2 = uint_to_unit_float(r.v[2 * pair + 1]);
        } else {
          u1 = uint_to_unit_double(r.v[0], r.v[1]);
          u2 = uint_to_unit_double(r.v[2], r.v[3]);
        }
        const double radius = std::sqrt(-2.0 * std::log(1.0 - u1));  // 1 - u1 in (0, 1]
        z[2 * pair] = radius * std::cos(kTwoPi * u2);
        z[2 * pair + 1] = radius * std::sin(kTwoPi * u2);
      }
      for (index_t k = 0; k < per_block && b * per_block + k < n; ++k) {
        out[b * per_block + k] = static_cast<T>(mean + stddev * z[k]);
      }
    }
  });
}

// out (n,) raw 32-bit words, 4 per block.
void rng_bits(std::uint32_t* out, index_t n) {
  const index_t nblocks = ceil_div(n, 4);
  const RngState s = rng_reserve(static_cast<std::uint64_t>(nblocks));
  parallel_for(nblocks, n * 4, [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const Philox4x32 r = philox4x32(s.seed, s.offset + static_cast<std::uint64_t>(b));
      for (index_t k = 0; k < 4 && b * 4 + k < n; ++k) out[b * 4 + k] = r.v[k];
    }
  });
}

template void rng_uniform<float>(float*, index_t, float, float);
template void rng_uniform<double>(double*, index_t, double, double);
template void rng_normal<float>(float*, index_t, float, float);
template void rng_normal<double>(double*, index_t, double, double);

}  // namespace gk
