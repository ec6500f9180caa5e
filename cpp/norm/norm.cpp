// Normalization drivers: statistics, running-stat updates and coefficients in
// double; the passes over the data go to the ISA's micro-kernels.
//
// Determinism: every reduction is first done per row (or per fixed chunk of
// kColChunk rows in the (N, C) layout) into its own partial, then the
// partials are merged in index order. Which thread computed a partial does not
// matter, so 1 and 2 threads give the same bits.
#include <algorithm>
#include <cmath>

#include "gradkit/isa.h"
#include "gradkit/norm.h"
#include "gradkit/parallel.h"

namespace gk {

const NormTable& norm_table() {
  static const DispatchTable<NormTable> t(init_norm_generic, GK_X86_INIT(init_norm_avx2),
                                          GK_X86_INIT(init_norm_avx512));
  return t.get();
}

namespace {

// Rows of the (N, C) layout per partial sum (fixed: independent of threads).
constexpr index_t kColChunk = 32;

// p1, p2 (rows,) = the two sums of row r, from row(r, &p1[r], &p2[r]); parallel over rows of S.
template <class RowF>
void per_row_sums(index_t rows, index_t S, RowF&& row, double* p1, double* p2, int nthreads) {
  parallel_for(rows, rows * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) row(r, p1 + r, p2 + r);
  }, nthreads);
}

// s1, s2 (C,) = per-channel sums over the N and S axes of a (N, C, S) tensor:
// rows of S reduced by row(r, ...), or, when S == 1, chunks of kColChunk rows of
// the (N, C) matrix by col(r0, nrows, s1, s2) (which adds into its arguments).
template <class RowF, class ColF>
void channel_sums(index_t N, index_t C, index_t S, RowF&& row, ColF&& col, double* s1, double* s2, int nthreads) {
  if (S == 1) {
    const index_t nchunks = ceil_div(N, kColChunk);
    AlignedBuffer<double> part(2 * nchunks * C);
    double* p = part.data();
    std::fill(p, p + 2 * nchunks * C, 0.0);
    parallel_for(nchunks, N * C, [&](index_t c0, index_t c1) {
      for (index_t ch = c0; ch < c1; ++ch) {
        const index_t r0 = ch * kColChunk;
        col(r0, std::min(kColChunk, N - r0), p + 2 * ch * C, p + (2 * ch + 1) * C);
      }
    }, nthreads);
    for (index_t c = 0; c < C; ++c) {
      double a = 0, b = 0;
      for (index_t ch = 0; ch < nchunks; ++ch) {
        a += p[2 * ch * C + c];
        b += p[(2 * ch + 1) * C + c];
      }
      s1[c] = a;
      s2[c] = b;
    }
    return;
  }
  AlignedBuffer<double> part(2 * N * C);
  double* p1 = part.data();
  double* p2 = p1 + N * C;
  per_row_sums(N * C, S, row, p1, p2, nthreads);
  for (index_t c = 0; c < C; ++c) {
    double a = 0, b = 0;
    for (index_t n = 0; n < N; ++n) {
      a += p1[n * C + c];
      b += p2[n * C + c];
    }
    s1[c] = a;
    s2[c] = b;
  }
}

// Applies row(r) to the N*C rows of S, or col(r0, nrows) to chunks of the (N, C) matrix when S == 1.
template <class RowF, class ColF>
void channel_apply(index_t N, index_t C, index_t S, RowF&& row, ColF&& col, int nthreads) {
  if (S == 1) {
    const index_t nchunks = ceil_div(N, kColChunk);
    parallel_for(nchunks, N * C, [&](index_t c0, index_t c1) {
      for (index_t ch = c0; ch < c1; ++ch) col(ch * kColChunk, std::min(kColChunk, N - ch * kColChunk));
    }, nthreads);
    return;
  }
  parallel_for(N * C, N * C * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) row(r);
  }, nthreads);
}

// mean and 1/sqrt(var + eps) from shifted sums over count elements; var is the biased variance.
inline void finish_stats(double shift, double s1, double s2, index_t count, double eps, double* mean, double* var,
                         double* rstd) {
  const double m1 = s1 / static_cast<double>(count);
  const double v = std::max(s2 / static_cast<double>(count) - m1 * m1, 0.0);
  *mean = shift + m1;
  *var = v;
  *rstd = 1.0 / std::sqrt(v + eps);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Batch norm: x (N, C, S); statistics per channel over N*S; parallel over N*C rows.
template <class T>
void batch_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias,
                        T* running_mean, T* running_var, index_t N, index_t C, index_t S, bool use_batch_stats,
                        double momentum, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t count = N * S;
  if (C == 0) return;
  AlignedBuffer<T> buf(4 * C);
  T* k = buf.data();
  T* a = k + C;
  T* b = a + C;
  if (use_batch_stats) {
    if (count == 0) {  // nothing to normalise: no statistics, running stats untouched
      std::fill(mean, mean + C, 0.0);
      std::fill(rstd, rstd + C, 0.0);
      return;
    }
    for (index_t c = 0; c < C; ++c) k[c] = x[c * S];  // shift: the first element of each channel
    AlignedBuffer<double> sums(2 * C);
    double* s1 = sums.data();
    double* s2 = s1 + C;
    channel_sums(
        N, C, S, [&](index_t r, double* p1, double* p2) { kern.row_stats(x + r * S, S, k[r % C], p1, p2); },
        [&](index_t r0, index_t rows, double* p1, double* p2) { kern.col_stats(x + r0 * C, rows, C, k, p1, p2); },
        s1, s2, nthreads);
    for (index_t c = 0; c < C; ++c) {
      double var;
      finish_stats(static_cast<double>(k[c]), s1[c], s2[c], count, eps, &mean[c], &var, &rstd[c]);
      if (running_mean != nullptr) {
        const double m = momentum;
        running_mean[c] = static_cast<T>((1.0 - m) * static_cast<double>(running_mean[c]) + m * mean[c]);
      }
      if (running_var != nullptr) {
        const double unbiased = count > 1 ? var * static_cast<double>(count) / static_cast<double>(count - 1) : var;
        running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
      }
    }
  } else {
    for (index_t c = 0; c < C; ++c) {
      mean[c] = static_cast<double>(running_mean[c]);
      rstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    }
  }
  if (count == 0) return;
  // y = a * (x - k) + b with k = mean rounded to T: a = w * rstd, b = bias - a * (mean - k).
  for (index_t c = 0; c < C; ++c) {
    k[c] = static_cast<T>(mean[c]);
    const double ac = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[c];
    a[c] = static_cast<T>(ac);
    b[c] = static_cast<T>((bias ? static_cast<double>(bias[c]) : 0.0) - ac * (mean[c] - static_cast<double>(k[c])));
  }
  channel_apply(
      N, C, S, [&](index_t r) { kern.row_affine(y + r * S, x + r * S, S, k[r % C], a[r % C], b[r % C]); },
      [&](index_t r0, index_t rows) { kern.col_affine(y + r0 * C, x + r0 * C, rows, C, k, a, b); }, nthreads);
}

// dy, x, dx (N, C, S); two passes: per-channel sums of dy and dy * (x - mean), then dx.
template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t N, index_t C, index_t S, bool batch_stats, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t count = N * S;
  if (C == 0 || count == 0) return;
  AlignedBuffer<T> buf(4 * C);
  T* k = buf.data();
  T* A = k + C;
  T* B = A + C;
  T* Cc = B + C;
  for (index_t c = 0; c < C; ++c) k[c] = static_cast<T>(mean[c]);
  AlignedBuffer<double> sums(2 * C);
  double* sd = sums.data();  // sum dy
  double* sx = sd + C;       // sum dy * (x - mean)
  if (batch_stats || dweight != nullptr || dbias != nullptr) {
    channel_sums(
        N, C, S, [&](index_t r, double* p1, double* p2) { kern.row_dot(dy + r * S, x + r * S, S, k[r % C], p1, p2); },
        [&](index_t r0, index_t rows, double* p1, double* p2) {
          kern.col_dot(dy + r0 * C, x + r0 * C, rows, C, k, p1, p2);
        },
        sd, sx, nthreads);
    for (index_t c = 0; c < C; ++c) {
      sx[c] -= (mean[c] - static_cast<double>(k[c])) * sd[c];
      if (dbias != nullptr) dbias[c] += static_cast<T>(sd[c]);
      if (dweight != nullptr) dweight[c] += static_cast<T>(sx[c] * rstd[c]);
    }
  }
  // dx = w * rstd * (dy - sd / count - xhat * sx * rstd / count), xhat = (x - k - m1) * rstd, m1 = mean - k.
  for (index_t c = 0; c < C; ++c) {
    const double g = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[c];
    A[c] = static_cast<T>(g);
    if (batch_stats) {
      const double bx = -g * rstd[c] * rstd[c] * sx[c] / static_cast<double>(count);
      B[c] = static_cast<T>(bx);
      Cc[c] = static_cast<T>(-g * sd[c] / static_cast<double>(count) - bx * (mean[c] - static_cast<double>(k[c])));
    } else {
      B[c] = T(0);
      Cc[c] = T(0);
    }
  }
  channel_apply(
      N, C, S,
      [&](index_t r) {
        const index_t c = r % C;
        kern.row_backward(dx + r * S, dy + r * S, x + r * S, S, k[c], A[c], B[c], Cc[c]);
      },
      [&](index_t r0, index_t rows) { kern.col_backward(dx + r0 * C, dy + r0 * C, x + r0 * C, rows, C, k, A, B, Cc); },
      nthreads);
}

// ---------------------------------------------------------------------------------------------
// Group norm: x (N, C, S), G groups of C/G channels; statistics per (n, g); parallel over N*C rows.
template <class T>
void group_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias, index_t N,
                        index_t C, index_t S, index_t G, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t cpg = C / G, rows = N * C, count = cpg * S;
  if (N == 0 || G == 0) return;
  if (count == 0) {
    std::fill(mean, mean + N * G, 0.0);
    std::fill(rstd, rstd + N * G, 0.0);
    return;
  }
  AlignedBuffer<T> shift(N * G);
  T* k = shift.data();
  for (index_t ng = 0; ng < N * G; ++ng) k[ng] = x[ng * count];  // first element of each group
  AlignedBuffer<double> part(2 * rows);
  double* p1 = part.data();
  double* p2 = p1 + rows;
  per_row_sums(rows, S, [&](index_t r, double* s1, double* s2) {
    kern.row_stats(x + r * S, S, k[r / cpg], s1, s2);
  }, p1, p2, nthreads);
  for (index_t ng = 0; ng < N * G; ++ng) {
    double s1 = 0, s2 = 0, var;
    for (index_t r = ng * cpg; r < (ng + 1) * cpg; ++r) {
      s1 += p1[r];
      s2 += p2[r];
    }
    finish_stats(static_cast<double>(k[ng]), s1, s2, count, eps, &mean[ng], &var, &rstd[ng]);
    k[ng] = static_cast<T>(mean[ng]);
  }
  parallel_for(rows, rows * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t ng = r / cpg, c = r % C;
      const double a = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[ng];
      const double b = (bias ? static_cast<double>(bias[c]) : 0.0) - a * (mean[ng] - static_cast<double>(k[ng]));
      kern.row_affine(y + r * S, x + r * S, S, k[ng], static_cast<T>(a), static_cast<T>(b));
    }
  }, nthreads);
}

// Two passes: per-row sums of dy and dy * (x - mean), then dx per row.
template <class T>
void group_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t N, index_t C, index_t S, index_t G, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t cpg = C / G, rows = N * C, count = cpg * S;
  if (N == 0 || G == 0 || count == 0) return;
  AlignedBuffer<T> shift(N * G);
  T* k = shift.data();
  for (index_t ng = 0; ng < N * G; ++ng) k[ng] = static_cast<T>(mean[ng]);
  AlignedBuffer<double> part(2 * rows + 2 * N * G);
  double* sd = part.data();  // per row: sum dy
  double* sx = sd + rows;    // per row: sum dy * (x - mean)
  double* g1 = sx + rows;    // per group: sum dy * w
  double* g2 = g1 + N * G;   // per group: sum dy * w * xhat
  per_row_sums(rows, S, [&](index_t r, double* s1, double* s2) {
    kern.row_dot(dy + r * S, x + r * S, S, k[r / cpg], s1, s2);
  }, sd, sx, nthreads);
  for (index_t ng = 0; ng < N * G; ++ng) {
    const double m1 = mean[ng] - static_cast<double>(k[ng]);
    double a = 0, b = 0;
    for (index_t r = ng * cpg; r < (ng + 1) * cpg; ++r) {
      sx[r] -= m1 * sd[r];
      const double w = weight ? static_cast<double>(weight[r % C]) : 1.0;
      a += w * sd[r];
      b += w * sx[r] * rstd[ng];
    }
    g1[ng] = a;
    g2[ng] = b;
  }
  if (dweight != nullptr || dbias != nullptr) {
    for (index_t c = 0; c < C; ++c) {
      double dw = 0, db = 0;
      for (index_t n = 0; n < N; ++n) {
        db += sd[n * C + c];
        dw += sx[n * C + c] * rstd[n * G + c / cpg];
      }
      if (dweight != nullptr) dweight[c] += static_cast<T>(dw);
      if (dbias != nullptr) dbias[c] += static_cast<T>(db);
    }
  }
  // dx = rstd * (w * dy - g1 / count - xhat * g2 / count), xhat = (x - k - m1) * rstd.
  parallel_for(rows, rows * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t ng = r / cpg, c = r % C;
      const double rs = rstd[ng], m1 = mean[ng] - static_cast<double>(k[ng]);
      const double w = weight ? static_cast<double>(weight[c]) : 1.0;
      const double bx = -rs * rs * g2[ng] / static_cast<double>(count);
      const double cc = -rs * g1[ng] / static_cast<double>(count) - bx * m1;
      kern.row_backward(dx + r * S, dy + r * S, x + r * S, S, k[ng], static_cast<T>(rs * w), static_cast<T>(bx),
                        static_cast<T>(cc));
    }
  }, nthreads);
}

// ---------------------------------------------------------------------------------------------
// Layer norm: x (M, D); each row is in cache across its two passes; parallel over rows.
template <class T>
void layer_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias, index_t M,
                        index_t D, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  if (M == 0) return;
  if (D == 0) {
    std::fill(mean, mean + M, 0.0);
    std::fill(rstd, rstd + M, 0.0);
    return;
  }
  parallel_for(M, M * D, [&](index_t m0, index_t m1) {
    for (index_t m = m0; m < m1; ++m) {
      const T* xm = x + m * D;
      double s1, s2, var;
      kern.row_stats(xm, D, xm[0], &s1, &s2);
      finish_stats(static_cast<double>(xm[0]), s1, s2, D, eps, &mean[m], &var, &rstd[m]);
      const T k = static_cast<T>(mean[m]);
      const double c = -(mean[m] - static_cast<double>(k)) * rstd[m];
      kern.ln_row_forward(y + m * D, xm, D, k, static_cast<T>(rstd[m]), static_cast<T>(c), weight, bias);
    }
  }, nthreads);
}

// dweight/dbias: each fixed chunk of rows adds into its own (D,) partials, merged in chunk order.
template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t M, index_t D, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  if (M == 0 || D == 0) return;
  const bool param_grad = dweight != nullptr || dbias != nullptr;
  const index_t chunk = std::max<index_t>(32, ceil_div(M, 256));  // at most 256 partials
  const index_t nchunks = ceil_div(M, chunk);
  AlignedBuffer<T> part(param_grad ? 2 * nchunks * D : 1);
  parallel_for(nchunks, M * D, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      T* dw = param_grad ? part.data() + 2 * ch * D : nullptr;
      T* db = param_grad ? dw + D : nullptr;
      if (param_grad) std::fill(dw, dw + 2 * D, T(0));
      for (index_t m = ch * chunk; m < std::min(M, (ch + 1) * chunk); ++m) {
        const T k = static_cast<T>(mean[m]);
        const double c = -(mean[m] - static_cast<double>(k)) * rstd[m];
        kern.ln_row_backward(dx + m * D, dw, db, dy + m * D, x + m * D, D, k, static_cast<T>(rstd[m]),
                             static_cast<T>(c), weight);
      }
    }
  }, nthreads);
  if (!param_grad) return;
  const T* p = part.data();
  parallel_for(D, nchunks * D, [&](index_t d0, index_t d1) {
    for (index_t d = d0; d < d1; ++d) {
      double sw = 0, sb = 0;
      for (index_t ch = 0; ch < nchunks; ++ch) {
        sw += static_cast<double>(p[2 * ch * D + d]);
        sb += static_cast<double>(p[(2 * ch + 1) * D + d]);
      }
      if (dweight != nullptr) dweight[d] += static_cast<T>(sw);
      if (dbias != nullptr) dbias[d] += static_cast<T>(sb);
    }
  }, nthreads);
}

#define GK_NORM_INSTANTIATE(T)                                                                                       \
  template void batch_norm_forward<T>(T*, double*, double*, const T*, const T*, const T*, T*, T*, index_t, index_t, \
                                      index_t, bool, double, double, int);                                          \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const double*, const double*, const T*,     \
                                       index_t, index_t, index_t, bool, int);                                       \
  template void group_norm_forward<T>(T*, double*, double*, const T*, const T*, const T*, index_t, index_t, index_t, \
                                      index_t, double, int);                                                        \
  template void group_norm_backward<T>(T*, T*, T*, const T*, const T*, const double*, const double*, const T*,     \
                                       index_t, index_t, index_t, index_t, int);                                    \
  template void layer_norm_forward<T>(T*, double*, double*, const T*, const T*, const T*, index_t, index_t, double, \
                                      int);                                                                         \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const double*, const double*, const T*,     \
                                       index_t, index_t, int);

GK_NORM_INSTANTIATE(float)
GK_NORM_INSTANTIATE(double)
#undef GK_NORM_INSTANTIATE

}  // namespace gk
