// Normalization drivers: statistics, running-stat updates and coefficients in
// double; the passes over the data go to the ISA's micro-kernels.
//
// Determinism: every reduction is first done per row (or per fixed chunk of
// kColChunk rows in the (N, C) layout) into its own partial, then the
// partials are merged in index order. Which thread computed a partial does not
// matter, so 1 and 2 threads give the same bits.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "gradkit/isa.h"
#include "gradkit/norm.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(norm, NormTable)

namespace {

// Rows of the (N, C) layout per partial sum (fixed: independent of threads).
constexpr index_t kColChunk = 32;

// Statistics are gathered over "units" of rows of S elements: unit u holds rows
// u * us + j * js for j < len (batch norm: unit = channel, rows n * C + c;
// group norm: unit = (n, g), rows (n, g)'s cpg consecutive channels). Each run of
// `chunk` rows of a unit (fixed by the caller, never by the thread count) is
// reduced into one partial sum.
struct RowUnits {
  index_t count, len, us, js, chunk;
  index_t row(index_t u, index_t j) const { return u * us + j * js; }
  index_t unit_of(index_t r) const { return (r / us) % count; }
  index_t nchunks() const { return ceil_div(len, chunk); }
  index_t chunk_rows(index_t ch) const { return std::min(chunk, len - ch * chunk); }
};

// Rows per partial sum: enough rows to fill one block of lanes (kNormBlock elements).
inline index_t rows_per_block(index_t S, index_t len) { return std::max<index_t>(1, std::min(len, kNormBlock / S)); }

// The two passes of a norm over (N, C, S) data:
//   1. sums(r0, nrows, u, &p1[i], &p2[i]) for chunk i = u * nchunks + ch: rows j in
//      [ch * chunk, ch * chunk + nrows) of unit u, the first being row r0, the others
//      js rows apart; prefetch(r0, nrows) asks for a chunk to be fetched one chunk ahead,
//   2. finish(u, s1, s2) with s1 = sum over the unit's chunks of p1 (in order), s2 likewise,
//   3. apply(r0, nrows, u) for every chunk (or single row) of a unit.
// When there are enough units for the threads each unit runs all three steps on one
// thread, so its rows are still in L2 for step 3 (one trip to memory instead of two; step 3
// runs the chunks last to first);
// otherwise each step is parallel (over chunks, then rows). The arithmetic, and so
// every bit of the result, is the same on both paths and for any thread count.
template <class Prefetch, class Sums, class Finish, class Apply>
void two_pass(const RowUnits& U, index_t S, double* p1, double* p2, Prefetch&& prefetch, Sums&& sums, Finish&& finish,
              Apply&& apply, int nthreads) {
  const index_t rows = U.count * U.len, nch = U.nchunks();
  auto merge = [&](index_t u) {
    double a = 0, b = 0;
    for (index_t ch = 0; ch < nch; ++ch) {
      a += p1[u * nch + ch];
      b += p2[u * nch + ch];
    }
    finish(u, a, b);
  };
  const int nt = threads_for(rows * S, nthreads);
  if (nt == 1 || U.count >= 4 * nt) {
    parallel_for(U.count, rows * S, [&](index_t u0, index_t u1) {
      for (index_t u = u0; u < u1; ++u) {
        for (index_t ch = 0; ch < nch; ++ch) {
          // rows of a unit may be far apart (batch norm): fetch the next chunk while this one is summed
          if (ch + 1 < nch) prefetch(U.row(u, (ch + 1) * U.chunk), U.chunk_rows(ch + 1));
          else if (u + 1 < u1) prefetch(U.row(u + 1, 0), U.chunk_rows(0));
          sums(U.row(u, ch * U.chunk), U.chunk_rows(ch), u, p1 + u * nch + ch, p2 + u * nch + ch);
        }
        merge(u);
        // last chunk first: the rows the sums read last are the likeliest still in L2 (a unit can
        // be about L2's size, and what apply writes evicts the oldest lines)
        for (index_t ch = nch; ch-- > 0;) apply(U.row(u, ch * U.chunk), U.chunk_rows(ch), u);
      }
    }, nt);
    return;
  }
  parallel_for(U.count * nch, rows * S, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const index_t u = i / nch, ch = i % nch;
      sums(U.row(u, ch * U.chunk), U.chunk_rows(ch), u, p1 + i, p2 + i);
    }
  }, nt);
  for (index_t u = 0; u < U.count; ++u) merge(u);
  parallel_for(rows, rows * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) apply(r, 1, U.unit_of(r));
  }, nt);
}

// The same for the (N, C) layout (S == 1), per column c: sums(r0, nrows, s1, s2) adds
// chunks of kColChunk rows into per-chunk (C,) partials, finish(c, s1, s2) per column,
// then apply(r0, nrows) per chunk.
template <class Sums, class Finish, class Apply>
void two_pass_cols(index_t N, index_t C, Sums&& sums, Finish&& finish, Apply&& apply, int nthreads) {
  const index_t nchunks = ceil_div(N, kColChunk);
  AlignedBuffer<double> part(2 * nchunks * C);
  double* p = part.data();
  std::fill(p, p + 2 * nchunks * C, 0.0);
  parallel_for(nchunks, N * C, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const index_t r0 = ch * kColChunk;
      sums(r0, std::min(kColChunk, N - r0), p + 2 * ch * C, p + (2 * ch + 1) * C);
    }
  }, nthreads);
  for (index_t c = 0; c < C; ++c) {
    double a = 0, b = 0;
    for (index_t ch = 0; ch < nchunks; ++ch) {
      a += p[2 * ch * C + c];
      b += p[(2 * ch + 1) * C + c];
    }
    finish(c, a, b);
  }
  parallel_for(nchunks, N * C, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) apply(ch * kColChunk, std::min(kColChunk, N - ch * kColChunk));
  }, nthreads);
}

// apply(r, 1, c) for the N*C rows of S, or apply_cols(r0, nrows) per chunk of the (N, C) matrix when S == 1.
template <class Apply, class ApplyCols>
void one_pass(index_t N, index_t C, index_t S, Apply&& apply, ApplyCols&& apply_cols, int nthreads) {
  if (S == 1) {
    const index_t nchunks = ceil_div(N, kColChunk);
    parallel_for(nchunks, N * C, [&](index_t c0, index_t c1) {
      for (index_t ch = c0; ch < c1; ++ch) apply_cols(ch * kColChunk, std::min(kColChunk, N - ch * kColChunk));
    }, nthreads);
    return;
  }
  parallel_for(N * C, N * C * S, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) apply(r, 1, r % C);
  }, nthreads);
}

// Asks for nrows rows of n bytes, stride bytes apart, to be brought into cache (the
// hardware prefetcher stops at each jump).
inline void prefetch_rows(const void* p, index_t nrows, index_t n, index_t stride) {
  const char* c = static_cast<const char*>(p);
  for (index_t r = 0; r < nrows; ++r) {
    for (index_t i = 0; i < n; i += 64) __builtin_prefetch(c + r * stride + i);
  }
}

// Batch norm's two passes over (N, C, S) data, per channel: col_sums / row_sums feed
// finish(c, s1, s2), then apply_cols (S == 1, the (N, C) layout) or apply(r0, nrows, c) (rows C apart).
// a and b (b may be null) are the tensors the row sums read, prefetched a chunk ahead.
template <class T, class ColSums, class RowSums, class Finish, class Apply, class ApplyCols>
void channel_two_pass(index_t N, index_t C, index_t S, const T* a, const T* b, ColSums&& col_sums,
                      RowSums&& row_sums, Finish&& finish, Apply&& apply, ApplyCols&& apply_cols, int nthreads) {
  if (S == 1) {
    two_pass_cols(N, C, col_sums, finish, apply_cols, nthreads);
    return;
  }
  const RowUnits U{C, N, 1, C, rows_per_block(S, N)};
  const index_t bytes = S * index_t(sizeof(T)), stride = C * S * index_t(sizeof(T));
  AlignedBuffer<double> part(2 * C * U.nchunks());
  two_pass(
      U, S, part.data(), part.data() + C * U.nchunks(),
      [&](index_t r, index_t nr) {
        prefetch_rows(a + r * S, nr, bytes, stride);
        if (b != nullptr) prefetch_rows(b + r * S, nr, bytes, stride);
      },
      row_sums, finish, apply, nthreads);
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
// Batch norm: x (N, C, S); statistics per channel over N*S; parallel over channels (or rows).
namespace {

// Batch norm's forward up to its output pass: the statistics (the batch's or the running ones), the
// running-stat update and the per-channel coefficients y = a * (x - k) + b. Then out(r, nr, c, k, a, b)
// writes nr rows (planes of S, C rows apart) of channel c from row r (S > 1; right after the channel's
// statistics when it can, while its rows are in L2) or out_cols(r0, rows, k, a, b) chunks of the (N, C)
// layout (S == 1, k, a, b per column).
template <class T, class Out, class OutCols>
void bn_forward_driver(double* mean, double* rstd, const T* x, const T* weight, const T* bias, T* running_mean,
                       T* running_var, index_t N, index_t C, index_t S, bool use_batch_stats, double momentum,
                       double eps, Out&& out, OutCols&& out_cols, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t count = N * S;
  if (C == 0) return;
  if (use_batch_stats && count == 0) {  // nothing to normalise: no statistics, running stats untouched
    std::fill(mean, mean + C, 0.0);
    std::fill(rstd, rstd + C, 0.0);
    return;
  }
  AlignedBuffer<T> buf(4 * C);
  T* k = buf.data();
  T* a = k + C;
  T* b = a + C;
  // y = a * (x - k) + b with k = mean rounded to T: a = w * rstd, b = bias - a * (mean - k).
  auto coefficients = [&](index_t c) {
    k[c] = static_cast<T>(mean[c]);
    const double ac = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[c];
    a[c] = static_cast<T>(ac);
    b[c] = static_cast<T>((bias ? static_cast<double>(bias[c]) : 0.0) - ac * (mean[c] - static_cast<double>(k[c])));
  };
  auto apply = [&](index_t r, index_t nr, index_t c) { out(r, nr, c, k[c], a[c], b[c]); };
  auto apply_cols = [&](index_t r0, index_t rows) { out_cols(r0, rows, k, a, b); };
  if (!use_batch_stats) {
    for (index_t c = 0; c < C; ++c) {
      mean[c] = static_cast<double>(running_mean[c]);
      rstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
      coefficients(c);
    }
    one_pass(N, C, S, apply, apply_cols, nthreads);
    return;
  }
  // The statistics are sums around a shift: the first element of each channel.
  for (index_t c = 0; c < C; ++c) k[c] = x[c * S];
  auto finish = [&](index_t c, double s1, double s2) {
    double var;
    finish_stats(static_cast<double>(k[c]), s1, s2, count, eps, &mean[c], &var, &rstd[c]);
    if (running_mean != nullptr) {
      const double unbiased = count > 1 ? var * static_cast<double>(count) / static_cast<double>(count - 1) : var;
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean[c]);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
    coefficients(c);
  };
  channel_two_pass<T>(
      N, C, S, x, nullptr,
      [&](index_t r0, index_t rows, double* s1, double* s2) { kern.col_stats(x + r0 * C, rows, C, k, s1, s2); },
      [&](index_t r, index_t nr, index_t c, double* s1, double* s2) {
        kern.rows_stats(x + r * S, nr, S, C * S, k[c], s1, s2);
      },
      finish, apply, apply_cols, nthreads);
}

// Batch norm's backward around its output pass: per-channel sums sd = sum g and sxk = sum g * (x - k)
// of the gradient g reaching the normalised values, from row_sums(r, nr, c, k, &sd, &sxk) (S > 1) or
// col_sums(r0, rows, k, s1, s2) (S == 1, adding per column); then dweight, dbias and the coefficients of
// dx = A * g + B * (x - k) + Cc, written by out(r, nr, c, k, A, B, Cc) or out_cols(r0, rows, k, A, B, Cc).
// `pre` (may be null) is prefetched alongside x: the gradient when it has x's layout.
template <class T, class ColSums, class RowSums, class Out, class OutCols>
void bn_backward_driver(T* dweight, T* dbias, const T* x, const T* pre, const double* mean, const double* rstd,
                        const T* weight, index_t N, index_t C, index_t S, bool batch_stats, ColSums&& col_sums,
                        RowSums&& row_sums, Out&& out, OutCols&& out_cols, int nthreads) {
  const index_t count = N * S;
  if (C == 0 || count == 0) return;
  AlignedBuffer<T> buf(4 * C);
  T* k = buf.data();
  T* A = k + C;
  T* B = A + C;
  T* Cc = B + C;
  for (index_t c = 0; c < C; ++c) k[c] = static_cast<T>(mean[c]);
  // dx = w * rstd * (dy - sd / count - xhat * sx * rstd / count), xhat = (x - k - m1) * rstd, m1 = mean - k,
  // from sd = sum dy and sx = sum dy * (x - mean) (zero for running statistics: dx = w * rstd * dy).
  auto finish = [&](index_t c, double sd, double sxk) {
    const double m1 = mean[c] - static_cast<double>(k[c]);
    const double sx = sxk - m1 * sd;
    if (dbias != nullptr) dbias[c] += static_cast<T>(sd);
    if (dweight != nullptr) dweight[c] += static_cast<T>(sx * rstd[c]);
    const double g = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[c];
    const double bx = batch_stats ? -g * rstd[c] * rstd[c] * sx / static_cast<double>(count) : 0.0;
    A[c] = static_cast<T>(g);
    B[c] = static_cast<T>(bx);
    Cc[c] = static_cast<T>(batch_stats ? -g * sd / static_cast<double>(count) - bx * m1 : 0.0);
  };
  auto apply = [&](index_t r, index_t nr, index_t c) { out(r, nr, c, k[c], A[c], B[c], Cc[c]); };
  auto apply_cols = [&](index_t r0, index_t rows) { out_cols(r0, rows, k, A, B, Cc); };
  if (!batch_stats && dweight == nullptr && dbias == nullptr) {  // no reduction needed
    for (index_t c = 0; c < C; ++c) finish(c, 0.0, 0.0);
    one_pass(N, C, S, apply, apply_cols, nthreads);
    return;
  }
  channel_two_pass<T>(
      N, C, S, x, pre, [&](index_t r0, index_t rows, double* s1, double* s2) { col_sums(r0, rows, k, s1, s2); },
      [&](index_t r, index_t nr, index_t c, double* s1, double* s2) { row_sums(r, nr, c, k[c], s1, s2); }, finish,
      apply, apply_cols, nthreads);
}

}  // namespace

template <class T>
void batch_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias,
                        T* running_mean, T* running_var, index_t N, index_t C, index_t S, bool use_batch_stats,
                        double momentum, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  bn_forward_driver<T>(
      mean, rstd, x, weight, bias, running_mean, running_var, N, C, S, use_batch_stats, momentum, eps,
      [&](index_t r, index_t nr, index_t, T k, T a, T b) { kern.rows_affine(y + r * S, x + r * S, nr, S, C * S, k, a, b); },
      [&](index_t r0, index_t rows, const T* k, const T* a, const T* b) {
        kern.col_affine(y + r0 * C, x + r0 * C, rows, C, k, a, b);
      },
      nthreads);
}

// dy, x, dx (N, C, S); two passes: per-channel sums of dy and dy * (x - mean), then dx.
template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t N, index_t C, index_t S, bool batch_stats, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  bn_backward_driver<T>(
      dweight, dbias, x, dy, mean, rstd, weight, N, C, S, batch_stats,
      [&](index_t r0, index_t rows, const T* k, double* s1, double* s2) {
        kern.col_dot(dy + r0 * C, x + r0 * C, rows, C, k, s1, s2);
      },
      [&](index_t r, index_t nr, index_t, T k, double* s1, double* s2) {
        kern.rows_dot(dy + r * S, x + r * S, nr, S, C * S, k, s1, s2);
      },
      [&](index_t r, index_t nr, index_t, T k, T a, T b, T c) {
        kern.rows_backward(dx + r * S, dy + r * S, x + r * S, nr, S, C * S, k, a, b, c);
      },
      [&](index_t r0, index_t rows, const T* k, const T* a, const T* b, const T* c) {
        kern.col_backward(dx + r0 * C, dy + r0 * C, x + r0 * C, rows, C, k, a, b, c);
      },
      nthreads);
}

// Batch norm (+ residual add) + ReLU: the batch-norm drivers with the ReLU in the output pass.
template <class T>
void batch_norm_relu_forward(T* y, double* mean, double* rstd, const T* x, const T* res, const T* weight,
                             const T* bias, T* running_mean, T* running_var, index_t N, index_t C, index_t S,
                             bool use_batch_stats, double momentum, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  bn_forward_driver<T>(
      mean, rstd, x, weight, bias, running_mean, running_var, N, C, S, use_batch_stats, momentum, eps,
      [&](index_t r, index_t nr, index_t, T k, T a, T b) {
        kern.rows_affine_relu(y + r * S, x + r * S, res != nullptr ? res + r * S : nullptr, nr, S, C * S, k, a, b);
      },
      [&](index_t r0, index_t rows, const T* k, const T* a, const T* b) {
        kern.col_affine_relu(y + r0 * C, x + r0 * C, res != nullptr ? res + r0 * C : nullptr, rows, C, k, a, b);
      },
      nthreads);
}

// The sums pass reads dy, y and x (and writes the ReLU's gradient g to dres); the output pass reads
// g back from dres when there is one, else dy and y again.
template <class T>
void batch_norm_relu_backward(T* dx, T* dres, T* dweight, T* dbias, const T* dy, const T* y, const T* x,
                              const double* mean, const double* rstd, const T* weight, index_t N, index_t C,
                              index_t S, bool batch_stats, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  // Without batch statistics or parameter gradients the driver runs no sums pass: g is written by the output pass.
  const bool sums = batch_stats || dweight != nullptr || dbias != nullptr;
  bn_backward_driver<T>(
      dweight, dbias, x, dy, mean, rstd, weight, N, C, S, batch_stats,
      [&](index_t r0, index_t rows, const T* k, double* s1, double* s2) {
        kern.col_dot_relu(dy + r0 * C, y + r0 * C, x + r0 * C, dres != nullptr ? dres + r0 * C : nullptr, rows, C,
                          k, s1, s2);
      },
      [&](index_t r, index_t nr, index_t, T k, double* s1, double* s2) {
        kern.rows_dot_relu(dy + r * S, y + r * S, x + r * S, dres != nullptr ? dres + r * S : nullptr, nr, S, C * S,
                           k, s1, s2);
      },
      [&](index_t r, index_t nr, index_t, T k, T a, T b, T c) {
        const index_t o = r * S;
        if (dres == nullptr) {
          kern.rows_backward_relu(dx + o, dy + o, y + o, x + o, nr, S, C * S, k, a, b, c);
          return;
        }
        if (!sums) {
          double s1, s2;
          kern.rows_dot_relu(dy + o, y + o, x + o, dres + o, nr, S, C * S, k, &s1, &s2);
        }
        kern.rows_backward(dx + o, dres + o, x + o, nr, S, C * S, k, a, b, c);
      },
      [&](index_t r0, index_t rows, const T* k, const T* a, const T* b, const T* c) {
        const index_t o = r0 * C;
        if (dres == nullptr) {
          kern.col_backward_relu(dx + o, dy + o, y + o, x + o, rows, C, k, a, b, c);
          return;
        }
        if (!sums) {
          AlignedBuffer<double> unused(2 * C);
          std::fill(unused.data(), unused.data() + 2 * C, 0.0);
          kern.col_dot_relu(dy + o, y + o, x + o, dres + o, rows, C, k, unused.data(), unused.data() + C);
        }
        kern.col_backward(dx + o, dres + o, x + o, rows, C, k, a, b, c);
      },
      nthreads);
}

// Batch norm + ReLU + MaxPool2d(2): the batch-norm drivers with the pooled output pass. H, W >= 2, so S > 1
// and the (N, C)-layout callbacks are never called.
template <class T>
void batch_norm_relu_pool2_forward(T* y, std::uint8_t* code, double* mean, double* rstd, const T* x, const T* weight,
                                   const T* bias, T* running_mean, T* running_var, index_t N, index_t C, index_t H,
                                   index_t W, bool use_batch_stats, double momentum, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t S = H * W, OS = (H / 2) * (W / 2);
  bn_forward_driver<T>(
      mean, rstd, x, weight, bias, running_mean, running_var, N, C, S, use_batch_stats, momentum, eps,
      [&](index_t r, index_t nr, index_t, T k, T a, T b) {
        kern.bnrp_forward(y + r * OS, code + r * OS, x + r * S, nr, H, W, C * S, C * OS, k, a, b);
      },
      [](index_t, index_t, const T*, const T*, const T*) {}, nthreads);
}

template <class T>
index_t batch_norm_relu_pool2_backward(T* dx, T* dweight, T* dbias, const T* dy, const std::uint8_t* code, const T* x,
                                       const double* mean, const double* rstd, const T* weight, index_t N, index_t C,
                                       index_t H, index_t W, bool batch_stats, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t S = H * W, OS = (H / 2) * (W / 2);
  std::atomic<index_t> bad{0};
  bn_backward_driver<T>(
      dweight, dbias, x, nullptr, mean, rstd, weight, N, C, S, batch_stats,
      [](index_t, index_t, const T*, double*, double*) {},
      [&](index_t r, index_t nr, index_t, T k, double* s1, double* s2) {
        kern.bnrp_dot(dy + r * OS, code + r * OS, x + r * S, nr, H, W, C * S, C * OS, k, s1, s2);
      },
      [&](index_t r, index_t nr, index_t, T k, T a, T b, T c) {
        bad += kern.bnrp_backward(dx + r * S, dy + r * OS, code + r * OS, x + r * S, nr, H, W, C * S, C * OS, k, a, b, c);
      },
      [](index_t, index_t, const T*, const T*, const T*, const T*) {}, nthreads);
  return bad.load();
}

// ---------------------------------------------------------------------------------------------
// Group norm: x (N, C, S), G groups of C/G channels; statistics per (n, g); parallel over groups (or rows).
template <class T>
void group_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias, index_t N,
                        index_t C, index_t S, index_t G, double eps, int nthreads) {
  const NormKernels<T>& kern = norm_table().get<T>();
  const index_t cpg = C / G, count = cpg * S;
  if (N == 0 || G == 0) return;
  if (count == 0) {
    std::fill(mean, mean + N * G, 0.0);
    std::fill(rstd, rstd + N * G, 0.0);
    return;
  }
  AlignedBuffer<T> shift(N * G);
  T* k = shift.data();
  for (index_t ng = 0; ng < N * G; ++ng) k[ng] = x[ng * count];  // first element of each group
  const RowUnits U{N * G, cpg, cpg, 1, rows_per_block(S, cpg)};  // a group's rows are contiguous
  AlignedBuffer<double> part(2 * N * G * U.nchunks());
  two_pass(
      U, S, part.data(), part.data() + N * G * U.nchunks(), [](index_t, index_t) {},
      [&](index_t r, index_t nr, index_t ng, double* s1, double* s2) {
        kern.rows_stats(x + r * S, nr, S, S, k[ng], s1, s2);
      },
      [&](index_t ng, double s1, double s2) {
        double var;
        finish_stats(static_cast<double>(k[ng]), s1, s2, count, eps, &mean[ng], &var, &rstd[ng]);
        k[ng] = static_cast<T>(mean[ng]);
      },
      [&](index_t r0, index_t nr, index_t ng) {  // a group's rows are channels: coefficients per row
        for (index_t r = r0; r < r0 + nr; ++r) {
          const index_t c = r % C;
          const double a = (weight ? static_cast<double>(weight[c]) : 1.0) * rstd[ng];
          const double b = (bias ? static_cast<double>(bias[c]) : 0.0) - a * (mean[ng] - static_cast<double>(k[ng]));
          kern.rows_affine(y + r * S, x + r * S, 1, S, S, k[ng], static_cast<T>(a), static_cast<T>(b));
        }
      },
      nthreads);
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
  double* sx = sd + rows;    // per row: sum dy * (x - k), then dy * (x - mean)
  double* g1 = sx + rows;    // per group: sum dy * w
  double* g2 = g1 + N * G;   // per group: sum dy * w * xhat
  // one row per partial: the per-channel sums weight the group sums and give dweight, dbias
  two_pass(
      RowUnits{N * G, cpg, cpg, 1, 1}, S, sd, sx, [](index_t, index_t) {},
      [&](index_t r, index_t, index_t ng, double* s1, double* s2) {
        kern.rows_dot(dy + r * S, x + r * S, 1, S, S, k[ng], s1, s2);
      },
      [&](index_t ng, double, double) {
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
      },
      // dx = rstd * (w * dy - g1 / count - xhat * g2 / count), xhat = (x - k - m1) * rstd.
      [&](index_t r0, index_t nr, index_t ng) {
        const double rs = rstd[ng], m1 = mean[ng] - static_cast<double>(k[ng]);
        const double bx = -rs * rs * g2[ng] / static_cast<double>(count);
        const double cc = -rs * g1[ng] / static_cast<double>(count) - bx * m1;
        for (index_t r = r0; r < r0 + nr; ++r) {
          const double w = weight ? static_cast<double>(weight[r % C]) : 1.0;
          kern.rows_backward(dx + r * S, dy + r * S, x + r * S, 1, S, S, k[ng], static_cast<T>(rs * w),
                             static_cast<T>(bx), static_cast<T>(cc));
        }
      },
      nthreads);
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
      kern.rows_stats(xm, 1, D, D, xm[0], &s1, &s2);
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
  // The merge is at most 1/32 of the work above: serial, to save a fork and join.
  const T* p = part.data();
  AlignedBuffer<double> acc(2 * D);
  double* sw = acc.data();
  double* sb = sw + D;
  std::fill(sw, sw + 2 * D, 0.0);
  for (index_t ch = 0; ch < nchunks; ++ch) {
    const T* pw = p + 2 * ch * D;
    const T* pb = pw + D;
    for (index_t d = 0; d < D; ++d) {
      sw[d] += static_cast<double>(pw[d]);
      sb[d] += static_cast<double>(pb[d]);
    }
  }
  for (index_t d = 0; d < D; ++d) {
    if (dweight != nullptr) dweight[d] += static_cast<T>(sw[d]);
    if (dbias != nullptr) dbias[d] += static_cast<T>(sb[d]);
  }
}

#define GK_NORM_INSTANTIATE(T)                                                                                       \
  template void batch_norm_forward<T>(T*, double*, double*, const T*, const T*, const T*, T*, T*, index_t, index_t, \
                                      index_t, bool, double, double, int);                                          \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const double*, const double*, const T*,     \
                                       index_t, index_t, index_t, bool, int);                                       \
  template void batch_norm_relu_forward<T>(T*, double*, double*, const T*, const T*, const T*, const T*, T*, T*,   \
                                           index_t, index_t, index_t, bool, double, double, int);                  \
  template void batch_norm_relu_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const double*,          \
                                            const double*, const T*, index_t, index_t, index_t, bool, int);        \
  template void batch_norm_relu_pool2_forward<T>(T*, std::uint8_t*, double*, double*, const T*, const T*, const T*, \
                                                 T*, T*, index_t, index_t, index_t, index_t, bool, double, double, int); \
  template index_t batch_norm_relu_pool2_backward<T>(T*, T*, T*, const T*, const std::uint8_t*, const T*,          \
                                                     const double*, const double*, const T*, index_t, index_t,     \
                                                     index_t, index_t, bool, int);                                  \
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
