// Drivers of the element-wise kernels: thread split, streaming choice, the
// dropout mask from the Philox generator.
#include "gradkit/eltwise.h"

#include <algorithm>
#include <cmath>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"
#include "gradkit/rng.h"

namespace gk {

namespace {

// Threads split the range on multiples of this many elements (keeps every
// part's start aligned like the base pointer and byte-aligned in the dropout mask).
constexpr index_t kBlock = 1024;
// Outputs at least this large are written with non-temporal stores: they
// cannot stay in the (32 MiB, shared) L3 anyway, and streaming saves the
// read-for-ownership of every output line.
constexpr index_t kStreamBytes = index_t{16} << 20;
// Relative cost of one element (transcendental activations cost more than a copy).
constexpr index_t kWorkPerElement = 4;

// f(begin, end) on kBlock-aligned parts of [0, n), one per thread.
template <class F>
void parallel_blocks(index_t n, int nthreads, F&& f) {
  const index_t nblocks = ceil_div(n, kBlock);
  parallel_for(nblocks, n * kWorkPerElement, [&](index_t b0, index_t b1) {
    f(b0 * kBlock, std::min(n, b1 * kBlock));
  }, nthreads);
}

}  // namespace

const char* act_name(Act act) {
  static const char* const names[kNumAct] = {"sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"};
  return names[static_cast<int>(act)];
}

GK_DEFINE_DISPATCH(eltwise, EltwiseTable)

// x (n,) -> y (n,); parallel over kBlock-aligned parts.
template <class T>
void act_forward(Act act, T* y, const T* x, index_t n, T alpha, int nthreads) {
  const ActForwardFn<T> kernel = eltwise_table().get<T>().forward[static_cast<int>(act)];
  const bool stream = n * static_cast<index_t>(sizeof(T)) >= kStreamBytes && y != x;
  parallel_blocks(n, nthreads, [&](index_t i0, index_t i1) { kernel(y + i0, x + i0, i1 - i0, alpha, stream); });
}

// dy, s (n,) -> dx (n,); parallel over kBlock-aligned parts.
template <class T>
void act_backward(Act act, T* dx, const T* dy, const T* s, index_t n, T alpha, int nthreads) {
  const ActBackwardFn<T> kernel = eltwise_table().get<T>().backward[static_cast<int>(act)];
  const bool stream = n * static_cast<index_t>(sizeof(T)) >= kStreamBytes && dx != dy && dx != s;
  parallel_blocks(n, nthreads,
                  [&](index_t i0, index_t i1) { kernel(dx + i0, dy + i0, s + i0, i1 - i0, alpha, stream); });
}

// x (n,) -> y (n,), mask ((n + 7) / 8,); parallel over kBlock-aligned parts:
// each part draws its own Philox blocks (offset + i / 4) and applies them.
template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double p, int nthreads) {
  const index_t nblocks = ceil_div(n, 4);
  const RngState s = rng_reserve(static_cast<std::uint64_t>(nblocks));
  // keep iff word >= threshold: P(keep) = 1 - threshold / 2^32 ~ 1 - p.
  const double th = std::min(std::round(p * 4294967296.0), 4294967295.0);
  const std::uint32_t threshold = static_cast<std::uint32_t>(th);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const EltwiseTable& table = eltwise_table();
  const DropoutApplyFn<T> apply = table.get<T>().dropout_apply;
  const DropoutMaskFn make_mask = table.dropout_mask;
  parallel_blocks(n, nthreads, [&](index_t i0, index_t i1) {
    // This part's mask bytes (i0 is a multiple of kBlock), then the scaling.
    make_mask(mask, i0 / 8, ceil_div(i1, 8), n, s.seed, s.offset, threshold);
    apply(y + i0, x + i0, mask + i0 / 8, i1 - i0, scale);
  });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, index_t n, double p, int nthreads) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const DropoutApplyFn<T> apply = eltwise_table().get<T>().dropout_apply;
  parallel_blocks(n, nthreads, [&](index_t i0, index_t i1) { apply(dx + i0, dy + i0, mask + i0 / 8, i1 - i0, scale); });
}

#define GK_INSTANTIATE(T)                                                                               \
  template void act_forward<T>(Act, T*, const T*, index_t, T, int);                                     \
  template void act_backward<T>(Act, T*, const T*, const T*, index_t, T, int);                          \
  template void dropout_forward<T>(T*, std::uint8_t*, const T*, index_t, double, int);                  \
  template void dropout_backward<T>(T*, const T*, const std::uint8_t*, index_t, double, int);
GK_INSTANTIATE(float)
GK_INSTANTIATE(double)
#undef GK_INSTANTIATE

}  // namespace gk
