// One-pass activation statistics (stats.h). Compiled without ISA flags: the value, sum and
// bin-index loops auto-vectorise; the histogram increments are scalar.
#include "gradkit/stats.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gradkit/parallel.h"

namespace gk {

namespace {

// Elements per chunk of the fixed-chunk reduction (whole rows; at least one row).
constexpr index_t kStatsChunk = 16384;
// Elements measured per block inside a row: values and bin indices are staged in small buffers.
constexpr index_t kBlock = 256;

struct Partial {
  double sum = 0.0, sumsq = 0.0;
};

// Measures v[0..n) (already transformed): sums, saturated count, histogram; returns "any v > 0".
template <class T>
bool measure_block(const T* GK_RESTRICT v, index_t n, const StatsArgs& a, double inv_width, Partial& p,
                   std::int64_t* GK_RESTRICT hist, std::int64_t& saturated) {
  // Sums in double over four pairs of lanes (GCC/Clang vector types: SSE2 on any x86-64, no ISA
  // flags); plain loops would not vectorise without -ffast-math's reassociation.
  typedef double d2 __attribute__((vector_size(16)));
  d2 s0 = {0, 0}, s1 = s0, s2 = s0, s3 = s0, q0 = s0, q1 = s0, q2 = s0, q3 = s0;
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const d2 x0 = {static_cast<double>(v[i]), static_cast<double>(v[i + 1])};
    const d2 x1 = {static_cast<double>(v[i + 2]), static_cast<double>(v[i + 3])};
    const d2 x2 = {static_cast<double>(v[i + 4]), static_cast<double>(v[i + 5])};
    const d2 x3 = {static_cast<double>(v[i + 6]), static_cast<double>(v[i + 7])};
    s0 += x0, s1 += x1, s2 += x2, s3 += x3;
    q0 += x0 * x0, q1 += x1 * x1, q2 += x2 * x2, q3 += x3 * x3;
  }
  const d2 s = (s0 + s1) + (s2 + s3), q = (q0 + q1) + (q2 + q3);
  double sum = s[0] + s[1], sumsq = q[0] + q[1];
  for (; i < n; ++i) {
    const double d = v[i];
    sum += d;
    sumsq += d * d;
  }
  int pos = 0, sat = 0;
  const T sat_lo = static_cast<T>(a.sat_lo), sat_hi = static_cast<T>(a.sat_hi);
  for (i = 0; i < n; ++i) {
    pos |= v[i] > T(0);
    sat += (v[i] <= sat_lo) | (v[i] >= sat_hi);
  }
  p.sum += sum;
  p.sumsq += sumsq;
  saturated += sat;
  if (a.nbins > 0) {
    std::int32_t idx[kBlock];
    const T lo = static_cast<T>(a.lo), w = static_cast<T>(inv_width);
    const T top = static_cast<T>(a.nbins - 1);
    for (index_t i = 0; i < n; ++i) {
      T t = (v[i] - lo) * w;
      t = t >= T(0) ? t : T(0);  // NaN goes to bin 0
      t = t <= top ? t : top;
      idx[i] = static_cast<std::int32_t>(t);
    }
    // Four interleaved copies of the histogram: runs of equal values (the zeros of a ReLU) would
    // otherwise chain every increment on one counter.
    const int nb = a.nbins;
    index_t i = 0;
    for (; i + 4 <= n; i += 4) {
      ++hist[idx[i]];
      ++hist[nb + idx[i + 1]];
      ++hist[2 * nb + idx[i + 2]];
      ++hist[3 * nb + idx[i + 3]];
    }
    for (; i < n; ++i) ++hist[idx[i]];
  }
  return pos != 0;
}

// v = x (or scale * x + shift), then max(v, 0) with relu, for a block of one channel.
template <class T>
void load_plane(T* GK_RESTRICT v, const T* GK_RESTRICT x, index_t n, bool affine, T scale, T shift, bool relu) {
  if (affine) {
    for (index_t i = 0; i < n; ++i) v[i] = x[i] * scale + shift;
  } else {
    for (index_t i = 0; i < n; ++i) v[i] = x[i];
  }
  if (relu)
    for (index_t i = 0; i < n; ++i) v[i] = v[i] > T(0) ? v[i] : T(0);
}

}  // namespace

template <class T>
void activation_stats_forward(double* moments, std::int64_t* counts, std::uint8_t* positive, const T* x, index_t N,
                              index_t C, index_t S, const StatsArgs& args, int nthreads) {
  // x (N, C, S); rows are (n, c) planes of S elements, or (n) rows of C elements when S == 1.
  // Parallel over fixed chunks of rows.
  const index_t total = N * C * S;
  if (total == 0) return;
  const bool by_plane = S > 1;
  const index_t row_len = by_plane ? S : C;
  const index_t rows = by_plane ? N * C : N;
  const index_t rows_per_chunk = std::max<index_t>(1, kStatsChunk / row_len);
  const index_t nchunks = ceil_div(rows, rows_per_chunk);
  const int nt = static_cast<int>(std::min<index_t>(threads_for(total, nthreads), nchunks));
  const int nbins = args.nbins;
  const double inv_width = nbins > 0 ? nbins / (args.hi - args.lo) : 0.0;
  const bool affine = args.scale != nullptr;

  std::vector<Partial> part(nchunks);
  // Integer counts and OR-ed flags do not depend on the order: one copy per thread.
  // Per thread: four copies of the histogram (see measure_block), then the saturated count.
  const size_t per_thread = 4 * static_cast<size_t>(nbins) + 1;
  std::vector<std::int64_t> thread_counts(static_cast<size_t>(nt) * per_thread, 0);
  std::vector<std::uint8_t> thread_pos(positive ? static_cast<size_t>(nt) * C : 0, 0);

  auto chunk = [&](index_t k, int tid) {
    std::int64_t* hist = thread_counts.data() + static_cast<size_t>(tid) * per_thread;
    std::int64_t& saturated = hist[4 * nbins];
    std::uint8_t* pos = positive ? thread_pos.data() + static_cast<size_t>(tid) * C : nullptr;
    alignas(64) T v[kBlock];
    Partial p;
    const index_t r_end = std::min(rows, (k + 1) * rows_per_chunk);
    for (index_t r = k * rows_per_chunk; r < r_end; ++r) {
      const T* row = x + r * row_len;
      if (by_plane) {
        const index_t c = r % C;
        const T sc = affine ? static_cast<T>(args.scale[c]) : T(1);
        const T sh = args.shift ? static_cast<T>(args.shift[c]) : T(0);
        bool any = false;
        for (index_t b = 0; b < S; b += kBlock) {
          const index_t n = std::min(kBlock, S - b);
          load_plane(v, row + b, n, affine, sc, sh, args.relu);
          any |= measure_block(v, n, args, inv_width, p, hist, saturated);
        }
        if (pos && any) pos[c] = 1;
      } else {
        for (index_t b = 0; b < C; b += kBlock) {
          const index_t n = std::min(kBlock, C - b);
          if (affine) {
            for (index_t i = 0; i < n; ++i)
              v[i] = row[b + i] * static_cast<T>(args.scale[b + i]) + static_cast<T>(args.shift[b + i]);
          } else {
            for (index_t i = 0; i < n; ++i) v[i] = row[b + i];
          }
          if (args.relu)
            for (index_t i = 0; i < n; ++i) v[i] = v[i] > T(0) ? v[i] : T(0);
          measure_block(v, n, args, inv_width, p, hist, saturated);
          if (pos)
            for (index_t i = 0; i < n; ++i) pos[b + i] |= v[i] > T(0);
        }
      }
    }
    part[k] = p;
  };

  if (nt == 1) {
    for (index_t k = 0; k < nchunks; ++k) chunk(k, 0);
  } else {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (index_t k = 0; k < nchunks; ++k) chunk(k, omp_get_thread_num());
  }

  double s = 0.0, s2 = 0.0;
  for (const Partial& p : part) {
    s += p.sum;
    s2 += p.sumsq;
  }
  moments[0] += s;
  moments[1] += s2;
  for (int t = 0; t < nt; ++t) {
    const std::int64_t* h = thread_counts.data() + static_cast<size_t>(t) * per_thread;
    for (int b = 0; b < nbins; ++b) counts[b] += h[b] + h[nbins + b] + h[2 * nbins + b] + h[3 * nbins + b];
    counts[nbins] += h[4 * nbins];
  }
  if (positive)
    for (int t = 0; t < nt; ++t)
      for (index_t c = 0; c < C; ++c) positive[c] |= thread_pos[static_cast<size_t>(t) * C + c];
}

template void activation_stats_forward<float>(double*, std::int64_t*, std::uint8_t*, const float*, index_t, index_t,
                                              index_t, const StatsArgs&, int);
template void activation_stats_forward<double>(double*, std::int64_t*, std::uint8_t*, const double*, index_t,
                                               index_t, index_t, const StatsArgs&, int);

}  // namespace gk
