// Normalization: batch norm, group norm (instance norm is group norm with one
// channel per group) and layer norm, forward and backward.
//
// Every norm here normalises groups of elements with per-group statistics and
// then applies a per-channel (or per-feature) affine map. The drivers
// (cpp/norm/norm.cpp) reduce contiguous rows with the ISA's micro-kernels
// (NormKernels below), merge the row partials in double in a fixed order and
// apply the result, so 1 and 2 threads give identical bits.
//
// Numerics: statistics are sums of (x - K) and (x - K)^2 around a shift K taken
// from the data (a float sum of squares cancels when |mean| >> std), blocks of
// at most kNormBlock elements summed in T and merged in double. The apply and
// backward kernels also work on (x - K) with K = the mean rounded to T, so
// y = a * (x - K) + b never forms x * a - mean * a (which cancels too).
// The statistics handed between forward and backward are float64 arrays:
// mean (exact enough to re-derive K) and rstd = 1 / sqrt(var + eps).
#pragma once
#include <cstdint>

#include "gradkit/common.h"
#include "gradkit/isa.h"

namespace gk {

// Elements summed in T lanes before they are folded into a double.
constexpr index_t kNormBlock = 4096;

// Per-ISA micro-kernels for one dtype. Sums are returned (or added) in double.
template <class T>
struct NormKernels {
  // s1 = sum (x - k), s2 = sum (x - k)^2 over nrows rows of n elements, row r at x + r * stride.
  void (*rows_stats)(const T* x, index_t nrows, index_t n, index_t stride, T k, double* s1, double* s2);
  // y = a * (x - k) + b over nrows rows of n elements (y and x alike), row r at + r * stride.
  void (*rows_affine)(T* y, const T* x, index_t nrows, index_t n, index_t stride, T k, T a, T b);
  // s1 = sum dy, s2 = sum dy * (x - k) over nrows rows of n elements (dy and x alike), row r at + r * stride.
  void (*rows_dot)(const T* dy, const T* x, index_t nrows, index_t n, index_t stride, T k, double* s1, double* s2);
  // dx = a * dy + b * (x - k) + c over nrows rows of n elements (dx, dy, x alike), row r at + r * stride.
  void (*rows_backward)(T* dx, const T* dy, const T* x, index_t nrows, index_t n, index_t stride, T k, T a, T b,
                        T c);
  // The same four for a (rows, cols) block with per-column k, a, b, c: the
  // (N, C) batch-norm layout. The sums are ADDED into s1[cols], s2[cols].
  void (*col_stats)(const T* x, index_t rows, index_t cols, const T* k, double* s1, double* s2);
  void (*col_affine)(T* y, const T* x, index_t rows, index_t cols, const T* k, const T* a, const T* b);
  void (*col_dot)(const T* dy, const T* x, index_t rows, index_t cols, const T* k, double* s1, double* s2);
  void (*col_backward)(T* dx, const T* dy, const T* x, index_t rows, index_t cols, const T* k, const T* a,
                       const T* b, const T* c);
  // Batch norm + (residual add +) ReLU: y = relu(a * (x - k) + b + res) (res null: no residual),
  // ReLU as eltwise's (NaN kept; the gradient passes where y > 0 or y is NaN).
  void (*rows_affine_relu)(T* y, const T* x, const T* res, index_t nrows, index_t n, index_t stride, T k, T a, T b);
  // With g = the gradient the ReLU passes (dy where y > 0): s1 = sum g, s2 = sum g * (x - k), and g is
  // stored to gout (the residual's gradient) unless gout is null.
  void (*rows_dot_relu)(const T* dy, const T* y, const T* x, T* gout, index_t nrows, index_t n, index_t stride, T k,
                        double* s1, double* s2);
  // dx = a * g + b * (x - k) + c.
  void (*rows_backward_relu)(T* dx, const T* dy, const T* y, const T* x, index_t nrows, index_t n, index_t stride,
                             T k, T a, T b, T c);
  // The same three for the (N, C) layout (per-column k, a, b, c; sums ADDED into s1[cols], s2[cols]).
  void (*col_affine_relu)(T* y, const T* x, const T* res, index_t rows, index_t cols, const T* k, const T* a,
                          const T* b);
  void (*col_dot_relu)(const T* dy, const T* y, const T* x, T* gout, index_t rows, index_t cols, const T* k,
                       double* s1, double* s2);
  void (*col_backward_relu)(T* dx, const T* dy, const T* y, const T* x, index_t rows, index_t cols, const T* k,
                            const T* a, const T* b, const T* c);
  // Layer norm, one row of n features: xhat = a * (x - k) + c;
  // forward y = xhat * w + b (w, b may be null: 1 and 0).
  void (*ln_row_forward)(T* y, const T* x, index_t n, T k, T a, T c, const T* w, const T* b);
  // backward: g = dy * w, dx = a * (g - mean(g) - xhat * mean(g * xhat));
  // dw[i] += dy[i] * xhat[i] and db[i] += dy[i] when dw / db are not null.
  void (*ln_row_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, index_t n, T k, T a, T c, const T* w);
  // Batch norm + ReLU + 2x2 stride-2 max pool over nrows (H, W) planes, plane r at x + r * stride
  // (outputs and codes at + r * ostride, ostride >= (H/2)*(W/2)), v = a * (x - k) + b:
  // y = max(window max of v, 0) (NaN propagates), code = the window position dh*2+dw of the first
  // max, or kPoolNoGrad when that max is <= 0 (the ReLU passes no gradient).
  void (*bnrp_forward)(T* y, std::uint8_t* code, const T* x, index_t nrows, index_t H, index_t W, index_t stride,
                       index_t ostride, T k, T a, T b);
  // s1 = sum g, s2 = sum g * (x[max position] - k) over the outputs whose code is not kPoolNoGrad, g = dy.
  void (*bnrp_dot)(const T* dy, const std::uint8_t* code, const T* x, index_t nrows, index_t H, index_t W,
                   index_t stride, index_t ostride, T k, double* s1, double* s2);
  // dx = b * (x - k) + c everywhere, plus a * dy at the max position of each output with a gradient.
  // Returns the number of codes that are neither a window position nor kPoolNoGrad (they are skipped).
  index_t (*bnrp_backward)(T* dx, const T* dy, const std::uint8_t* code, const T* x, index_t nrows, index_t H,
                           index_t W, index_t stride, index_t ostride, T k, T a, T b, T c);
};

// The code of a pooled output that passes no gradient (its window max was <= 0).
constexpr std::uint8_t kPoolNoGrad = 0xFF;

using NormTable = DtypeTable<NormKernels>;
GK_DECLARE_DISPATCH(norm, NormTable)

// Batch norm. x, y (N, C, S) contiguous (S = H*W, or 1 for (N, C) input);
// weight, bias (C,) or null; running_mean, running_var (C,) or null.
// use_batch_stats: normalise with the statistics of this batch (training, or
// no running statistics); then running stats (if given) are updated in place:
// r = (1 - momentum) * r + momentum * stat, with the unbiased variance.
// Otherwise the running statistics normalise. mean, rstd (C,) receive the
// statistics used. Parallel over N*C rows (or row chunks when S == 1).
template <class T>
void batch_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias,
                        T* running_mean, T* running_var, index_t N, index_t C, index_t S, bool use_batch_stats,
                        double momentum, double eps, int nthreads = 0);

// dy, x, dx (N, C, S); mean, rstd (C,) from the forward; weight (C,) or null.
// dweight, dbias (C,) or null: ADDED into. batch_stats: the forward used the
// batch statistics (their gradient flows into dx) rather than running ones.
template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t N, index_t C, index_t S, bool batch_stats, int nthreads = 0);

// Batch norm (+ residual add) + ReLU in one: y = relu(batch_norm(x) + res), res (N, C, S) or null;
// arguments as batch_norm_forward. Two passes over x (statistics, then the output), as batch norm alone.
template <class T>
void batch_norm_relu_forward(T* y, double* mean, double* rstd, const T* x, const T* res, const T* weight,
                             const T* bias, T* running_mean, T* running_var, index_t N, index_t C, index_t S,
                             bool use_batch_stats, double momentum, double eps, int nthreads = 0);

// Its gradient: dy, y (the forward's output), x, dx (N, C, S). g = dy where y > 0 (the ReLU's gradient;
// also where y is NaN); dres (N, C, S) receives g (the residual's gradient) unless null; dx = batch_norm_backward
// of g; dweight, dbias ADDED into. Two passes (sums, then dx), as batch norm alone.
template <class T>
void batch_norm_relu_backward(T* dx, T* dres, T* dweight, T* dbias, const T* dy, const T* y, const T* x,
                              const double* mean, const double* rstd, const T* weight, index_t N, index_t C,
                              index_t S, bool batch_stats, int nthreads = 0);

// Batch norm, ReLU and MaxPool2d(2) in one: x (N, C, H, W) contiguous, H, W >= 2;
// y, code (N, C, H/2, W/2) (floor): y = max_pool2(relu(batch_norm(x))), code as in
// NormKernels::bnrp_forward. Statistics, running stats and mean/rstd as batch_norm_forward.
// Two passes over x (statistics, then normalise-pool); the full-size normalised tensor is never written.
template <class T>
void batch_norm_relu_pool2_forward(T* y, std::uint8_t* code, double* mean, double* rstd, const T* x, const T* weight,
                                   const T* bias, T* running_mean, T* running_var, index_t N, index_t C, index_t H,
                                   index_t W, bool use_batch_stats, double momentum, double eps, int nthreads = 0);

// Its gradient: dy, code (N, C, H/2, W/2), x, dx (N, C, H, W). dx is batch_norm_backward
// of the (sparse) gradient that the pool and the ReLU pass back; dweight, dbias ADDED into.
// Returns the number of invalid codes (skipped; the caller raises).
template <class T>
index_t batch_norm_relu_pool2_backward(T* dx, T* dweight, T* dbias, const T* dy, const std::uint8_t* code, const T* x,
                                       const double* mean, const double* rstd, const T* weight, index_t N, index_t C,
                                       index_t H, index_t W, bool batch_stats, int nthreads = 0);

// Group norm. x, y (N, C, S); G groups of C/G channels; statistics per (n, g)
// over (C/G) * S elements; weight, bias (C,) or null; mean, rstd (N, G).
// Parallel over N*C rows.
template <class T>
void group_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias, index_t N,
                        index_t C, index_t S, index_t G, double eps, int nthreads = 0);

template <class T>
void group_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t N, index_t C, index_t S, index_t G, int nthreads = 0);

// Layer norm. x, y (M, D): each row normalised over its D features;
// weight, bias (D,) or null; mean, rstd (M,). Parallel over rows.
template <class T>
void layer_norm_forward(T* y, double* mean, double* rstd, const T* x, const T* weight, const T* bias, index_t M,
                        index_t D, double eps, int nthreads = 0);

template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const double* mean, const double* rstd,
                         const T* weight, index_t M, index_t D, int nthreads = 0);

}  // namespace gk
