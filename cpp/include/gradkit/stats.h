// Activation statistics for diagnostics (gk.callbacks.ActivationStats, gk.diagnostics):
// one pass over a tensor giving sums in double, a fixed-bin histogram, a saturation count and
// per-channel "ever positive" flags. Generic code (no ISA flags), auto-vectorised.
#pragma once
#include <cstdint>

#include "gradkit/common.h"

namespace gk {

struct StatsArgs {
  // Optional per-channel affine map and ReLU applied before measuring (the activation of a fused
  // BatchNorm -> ReLU run, which never writes it): v = max(scale[c] * x + shift[c], 0).
  // scale and shift are given together or not at all; they are rounded to the input's dtype.
  const double* scale = nullptr;  // (C,) or null
  const double* shift = nullptr;  // (C,) or null
  bool relu = false;
  // Histogram of nbins equal bins over [lo, hi]; values outside go to the end bins. nbins 0: none.
  int nbins = 0;
  double lo = 0.0, hi = 1.0;
  // A value counts as saturated when v <= sat_lo or v >= sat_hi.
  double sat_lo = -1.0 / 0.0, sat_hi = 1.0 / 0.0;
};

// x (N, C, S) C-contiguous: channel c holds x[n, c, :] (S = 1 for (N, C) inputs).
// Adds into: moments (2,) [sum v, sum v^2] in double; counts (nbins + 1,) the histogram then the
// saturated count; positive (C,) set to 1 where some v > 0 (may be null).
// Parallel over fixed chunks of rows; double partial sums added in chunk order, so the bits do
// not depend on the thread count.
template <class T>
void activation_stats_forward(double* moments, std::int64_t* counts, std::uint8_t* positive, const T* x, index_t N,
                              index_t C, index_t S, const StatsArgs& args, int nthreads = 0);

}  // namespace gk
