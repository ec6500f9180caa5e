// Loss drivers: rows / chunks over threads, partials summed in a fixed order.
#include "gradkit/loss.h"

#include <algorithm>
#include <limits>

#include "gradkit/eltwise.h"
#include "gradkit/parallel.h"

namespace gk {

namespace {
// Fixed chunk of the MSE reduction (independent of the thread count).
constexpr index_t kMseChunk = 4096;
// Outputs at least this large are streamed (as the element-wise drivers).
constexpr index_t kStreamBytes = index_t{16} << 20;
}  // namespace

// logits (N, C), labels (N,) -> per-row losses, dlogits (N, C); parallel over rows.
template <class T>
double cross_entropy_forward(T* dlogits, const T* logits, const std::int64_t* labels, index_t N, index_t C,
                             double label_smoothing, int nthreads) {
  if (N == 0) return std::numeric_limits<double>::quiet_NaN();  // mean of nothing, as PyTorch
  const CrossEntropyFn<T> kernel = eltwise_table().get<T>().cross_entropy;
  AlignedBuffer<double> row_loss(N);
  double* rl = row_loss.data();
  const T eps = static_cast<T>(label_smoothing);
  const T grad_scale = static_cast<T>(1.0 / static_cast<double>(N));
  // dlogits beyond the cache are written with non-temporal stores (no read-for-ownership).
  const bool stream = N * C * static_cast<index_t>(sizeof(T)) >= kStreamBytes;
  parallel_for(N, N * C * 4, [&](index_t r0, index_t r1) {
    AlignedBuffer<T> scratch(dlogits != nullptr ? C : 1);  // one row of exp(x - max), per thread
    kernel(dlogits != nullptr ? dlogits + r0 * C : nullptr, rl + r0, scratch.data(), logits + r0 * C, labels + r0,
           r1 - r0, C, eps, grad_scale, stream);
  }, nthreads);
  double total = 0.0;
  for (index_t r = 0; r < N; ++r) total += rl[r];
  return total / static_cast<double>(N);
}

// x, t (n,) -> sum of squares per 4096-element chunk, d (n,); parallel over chunks.
template <class T>
double mse_forward(T* d, const T* x, const T* t, index_t n, int nthreads) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  const SquaredErrorFn<T> kernel = eltwise_table().get<T>().squared_error;
  const index_t nchunks = ceil_div(n, kMseChunk);
  AlignedBuffer<double> partial(nchunks);
  double* ps = partial.data();
  const T grad_scale = static_cast<T>(2.0 / static_cast<double>(n));
  parallel_for(nchunks, n, [&](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      const index_t i0 = c * kMseChunk, len = std::min(kMseChunk, n - i0);
      ps[c] = kernel(d != nullptr ? d + i0 : nullptr, x + i0, t + i0, len, grad_scale);
    }
  }, nthreads);
  double total = 0.0;
  for (index_t c = 0; c < nchunks; ++c) total += ps[c];
  return total / static_cast<double>(n);
}

template double cross_entropy_forward<float>(float*, const float*, const std::int64_t*, index_t, index_t, double, int);
template double cross_entropy_forward<double>(double*, const double*, const std::int64_t*, index_t, index_t, double,
                                              int);
template double mse_forward<float>(float*, const float*, const float*, index_t, int);
template double mse_forward<double>(double*, const double*, const double*, index_t, int);

}  // namespace gk
