// Element-wise kernel templates, written once over the element type and the
// vector type of gradkit/simd.h (math: gradkit/simd_math.h), instantiated per ISA by eltwise_generic.cpp,
// x86/avx2/eltwise_avx2.cpp and x86/avx512/eltwise_avx512.cpp (each defines
// GK_ISA_NS first, so every instantiation lives in its own namespace).
#pragma once
#include <cstdint>

#include "gradkit/eltwise.h"
#include "gradkit/simd_math.h"

namespace gk::GK_ISA_NS {
namespace eltwise {

using namespace gk::GK_ISA_NS::simd;

// Inputs are prefetched this far ahead: the hardware prefetchers alone leave
// the loads of a compute-heavy loop (tanh, GELU) waiting on memory, so time
// was compute + memory; with it the two overlap (tanh 16M floats, 2 threads:
// 6.5 -> 3.1 ms measured side by side). Prefetches never fault past the end.
constexpr index_t kPrefetchBytes = 8192;

template <class T>
GK_ALWAYS_INLINE void prefetch_ahead(const T* p) {
  __builtin_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, 0, 3);
}

// y[i] = f(x[i]) over n elements, full vectors then one partial vector. With
// `stream`, a partial head first aligns y for non-temporal stores.
template <class T, class F>
GK_ALWAYS_INLINE void map1(T* y, const T* x, index_t n, bool stream, F f) {
  constexpr index_t L = kLanes<T>;
  index_t i = 0;
  const auto addr = reinterpret_cast<std::uintptr_t>(y);
  if (stream && addr % sizeof(T) == 0) {
    const index_t head = GK_ISA_NS::min<index_t>(n, static_cast<index_t>((kVecBytes - addr % kVecBytes) % kVecBytes / sizeof(T)));
    if (head > 0) store_partial(y, f(load_partial(x, head)), head);
    for (i = head; i + L <= n; i += L) {
      prefetch_ahead(x + i);
      simd::stream(y + i, f(load(x + i)));
    }
    stream_fence();
  } else {
    for (; i + L <= n; i += L) {
      prefetch_ahead(x + i);
      store(y + i, f(load(x + i)));
    }
  }
  if (i < n) store_partial(y + i, f(load_partial(x + i, n - i)), n - i);
}

// z[i] = f(a[i], b[i]).
template <class T, class F>
GK_ALWAYS_INLINE void map2(T* z, const T* a, const T* b, index_t n, bool stream, F f) {
  constexpr index_t L = kLanes<T>;
  index_t i = 0;
  const auto addr = reinterpret_cast<std::uintptr_t>(z);
  if (stream && addr % sizeof(T) == 0) {
    const index_t head = GK_ISA_NS::min<index_t>(n, static_cast<index_t>((kVecBytes - addr % kVecBytes) % kVecBytes / sizeof(T)));
    if (head > 0) store_partial(z, f(load_partial(a, head), load_partial(b, head)), head);
    for (i = head; i + L <= n; i += L) {
      prefetch_ahead(a + i);
      prefetch_ahead(b + i);
      simd::stream(z + i, f(load(a + i), load(b + i)));
    }
    stream_fence();
  } else {
    for (; i + L <= n; i += L) {
      prefetch_ahead(a + i);
      prefetch_ahead(b + i);
      store(z + i, f(load(a + i), load(b + i)));
    }
  }
  if (i < n) store_partial(z + i, f(load_partial(a + i, n - i), load_partial(b + i, n - i)), n - i);
}

// ---- activations: one functor pair per Act ------------------------------------------------
// Each takes (x) or (dy, s) vectors and alpha; NaN inputs give NaN outputs.

template <Act A>
struct ActOp;

template <>
struct ActOp<Act::sigmoid> {
  template <class V>
  static V fwd(V x, elem_t<V>) { return sigmoid(x); }
  template <class V>
  static V bwd(V dy, V y, elem_t<V>) { return dy * (y * (elem_t<V>(1) - y)); }
};

template <>
struct ActOp<Act::tanh> {
  template <class V>
  static V fwd(V x, elem_t<V>) { return simd::tanh(x); }
  template <class V>
  static V bwd(V dy, V y, elem_t<V>) { return dy * (elem_t<V>(1) - y * y); }
};

template <>
struct ActOp<Act::relu> {
  // x < 0 ? 0 : x keeps NaN (as PyTorch); backward passes dy where y > 0
  // (and where y is NaN, as PyTorch's threshold_backward).
  template <class V>
  static V fwd(V x, elem_t<V>) { return x < elem_t<V>(0) ? zero<elem_t<V>>() : x; }
  template <class V>
  static V bwd(V dy, V y, elem_t<V>) { return y <= elem_t<V>(0) ? zero<elem_t<V>>() : dy; }
};

template <>
struct ActOp<Act::leaky_relu> {
  template <class V>
  static V fwd(V x, elem_t<V> slope) { return x > elem_t<V>(0) ? x : x * slope; }
  template <class V>
  static V bwd(V dy, V x, elem_t<V> slope) { return x > elem_t<V>(0) ? dy : dy * slope; }
};

template <>
struct ActOp<Act::elu> {
  template <class V>
  static V fwd(V x, elem_t<V> alpha) { return x > elem_t<V>(0) ? x : alpha * expm1(x); }
  template <class V>
  static V bwd(V dy, V x, elem_t<V> alpha) { return x > elem_t<V>(0) ? dy : dy * (alpha * simd::exp(x)); }
};

template <>
struct ActOp<Act::gelu> {
  // y = x Phi(x): simd::gelu (piecewise polynomials on AVX-512 for |x| < 3.875 and
  // AVX2 for |x| < 3.75, a tail formula beyond; the normal tail with x - q for x >= 0
  // on the generic path).
  template <class V>
  static V fwd(V x, elem_t<V>) { return simd::gelu(x); }
  // dx = dy (Phi(x) + x phi(x)) (simd::gelu_grad).
  template <class V>
  static V bwd(V dy, V x, elem_t<V>) { return dy * simd::gelu_grad(x); }
};

template <class T, Act A>
void act_forward_kernel(T* y, const T* x, index_t n, T alpha, bool stream) {
  map1(y, x, n, stream, [alpha](Vec<T> v) { return ActOp<A>::fwd(v, alpha); });
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// GELU forward, float, AVX2. simd::gelu costs one vector about 4x more when any of its
// lanes is beyond the piecewise fast path (|x| >= 3.75, NaN): with N(0, 9) inputs most
// vectors have one. Here every vector takes the fast path, its tail lanes are packed
// (simd::compress_store) from a block of kGeluBlock values into full vectors,
// computed there by simd::detail::gelu_tail, and blended back in registers
// (simd::expand_load) as the block is written out: the same bits as simd::gelu, lane by lane. Reading
// results back from a buffer lane by lane would stall on store forwarding; the block
// stays in L1 between the passes.
constexpr index_t kGeluBlock = 256;

template <>
inline void act_forward_kernel<float, Act::gelu>(float* y, const float* x, index_t n, float, bool stream) {
  using V = Vec<float>;
  constexpr index_t L = kLanes<float>;
  alignas(64) float fast[kGeluBlock];
  alignas(64) float tail[kGeluBlock + L];  // the block's tail lanes, packed
  unsigned char masks[kGeluBlock / L];
  index_t i = 0;
  const auto addr = reinterpret_cast<std::uintptr_t>(y);
  stream = stream && addr % sizeof(float) == 0;
  if (stream) {  // a partial head first aligns y for the non-temporal stores
    i = GK_ISA_NS::min<index_t>(n, static_cast<index_t>((kVecBytes - addr % kVecBytes) % kVecBytes / sizeof(float)));
    if (i > 0) store_partial(y, gelu(load_partial(x, i)), i);
  }
  while (i + L <= n) {
    const index_t nb = GK_ISA_NS::min<index_t>(kGeluBlock, (n - i) / L * L);
    // A block without tail lanes (with N(0, 1) inputs, 96% of them) goes straight through
    // the fast path: the largest |x| of the block, compared as integers (NaN and inf
    // above every finite value), costs two operations a vector, the buffer round trip
    // below about 2 ns a vector (Zen 3).
    Mask<float> top = mask_set1<float>(0);
    for (index_t j = 0; j < nb; j += L) top = max(top, bits(abs(load(x + i + j))));
    if (bitmask(not_less(from_bits<float>(top), set1(kGeluFastLimit))) == 0) {
      for (index_t j = 0; j < nb; j += L) {
        prefetch_ahead(x + i + j);
        const V v = load(x + i + j);
        const V r = gelu_fast(v, abs(v));
        if (stream) {
          simd::stream(y + i + j, r);
        } else {
          store(y + i + j, r);
        }
      }
      i += nb;
      continue;
    }
    int nt = 0;
    for (index_t j = 0; j < nb; j += L) {
      prefetch_ahead(x + i + j);
      const V v = load(x + i + j);
      const V a = abs(v);
      const unsigned m = bitmask(not_less(a, set1(kGeluFastLimit)));  // the tail lanes (NaN included)
      store(fast + j, gelu_fast(v, a));
      masks[j / L] = static_cast<unsigned char>(m);
      if (m != 0) {
        compress_store(tail + nt, v, m);
        nt += __builtin_popcount(m);
      }
    }
    if (nt > 0) {
      store(tail + nt, zero<float>());  // defined lanes past the last
      for (int t = 0; t < nt; t += L) store(tail + t, detail::gelu_tail(load(tail + t)));
    }
    int k = 0;
    for (index_t j = 0; j < nb; j += L) {
      const unsigned m = masks[j / L];
      V r = load(fast + j);
      if (m != 0) {
        r = expand_load(r, tail + k, m);
        k += __builtin_popcount(m);
      }
      if (stream) {
        simd::stream(y + i + j, r);
      } else {
        store(y + i + j, r);
      }
    }
    i += nb;
  }
  if (stream) stream_fence();
  if (i < n) store_partial(y + i, gelu(load_partial(x + i, n - i)), n - i);
}
#endif

template <class T, Act A>
void act_backward_kernel(T* dx, const T* dy, const T* s, index_t n, T alpha, bool stream) {
  map2(dx, dy, s, n, stream, [alpha](Vec<T> g, Vec<T> v) { return ActOp<A>::bwd(g, v, alpha); });
}

// ---- dropout -------------------------------------------------------------------------------------

// The kLanes mask bits of element i (i a multiple of kLanes) as a lane mask.
template <class T>
GK_ALWAYS_INLINE Mask<T> mask_bits(const std::uint8_t* mask, index_t i) {
  constexpr int L = kLanes<T>;
  std::uint32_t word;
  if constexpr (L >= 8) {
    word = 0;
    for (int b = 0; b < L / 8; ++b) word |= static_cast<std::uint32_t>(mask[i / 8 + b]) << (8 * b);
  } else {
    word = (mask[i / 8] >> (i % 8)) & ((1u << L) - 1u);
  }
  const Mask<T> lane_bit = mask_set1<T>(1) << iota<T>();
  return (mask_set1<T>(static_cast<elem_t<Mask<T>>>(word)) & lane_bit) != 0;
}

// Philox4x32-10 (gradkit/rng.h) on kLanes<double> consecutive counters at once:
// one block per 64-bit lane, 32-bit words zero-extended, 32x32 -> 64-bit products.
using U64 = Vec<std::uint64_t>;
constexpr int kU64Lanes = kLanes<std::uint64_t>;

GK_ALWAYS_INLINE void philox_lanes(U64 ctr, std::uint64_t key, U64 (&w)[4]) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint64_t kLo = 0xFFFFFFFFu;
  U64 c0 = ctr & kLo, c1 = ctr >> 32, c2 = U64{} , c3 = U64{};
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const U64 p0 = mul_lo32(c0, kM0), p1 = mul_lo32(c2, kM1);
    const U64 n0 = (p1 >> 32) ^ c1 ^ static_cast<std::uint64_t>(k0);
    const U64 n2 = (p0 >> 32) ^ c3 ^ static_cast<std::uint64_t>(k1);
    c1 = p1 & kLo;
    c3 = p0 & kLo;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// mask bytes [byte0, byte1): 2 Philox blocks (8 elements) per byte, kU64Lanes blocks at a time.
inline void dropout_mask_kernel(std::uint8_t* mask, index_t byte0, index_t byte1, index_t n, std::uint64_t key,
                                std::uint64_t offset, std::uint32_t threshold) {
  U64 lane;
  for (int i = 0; i < kU64Lanes; ++i) lane[i] = static_cast<std::uint64_t>(i);
  const std::uint64_t th = threshold;
  constexpr index_t kBytes = kU64Lanes / 2;  // mask bytes per batch of blocks
  for (index_t b = byte0; b < byte1; b += kBytes) {
    U64 w[4];
    philox_lanes(offset + static_cast<std::uint64_t>(2 * b) + lane, key, w);
    // 4 keep bits per block (lane), -1 / 0 comparisons masked to 1 / 0.
    const U64 nib = ((w[0] >= th) & 1) | ((w[1] >= th) & 2) | ((w[2] >= th) & 4) | ((w[3] >= th) & 8);
    for (index_t k = 0; k < kBytes && b + k < byte1; ++k) {
      std::uint32_t v = static_cast<std::uint32_t>(nib[2 * k] | (nib[2 * k + 1] << 4));
      const index_t first = (b + k) * 8;  // bits at or beyond n stay 0
      if (first + 8 > n) v &= (1u << (n - first)) - 1u;
      mask[b + k] = static_cast<std::uint8_t>(v);
    }
  }
}

// x (n,), mask ((n + 7) / 8,) bytes; x must start at an element index that is a
// multiple of 8 (the driver splits on 1024-element blocks).
template <class T>
void dropout_apply_kernel(T* y, const T* x, const std::uint8_t* mask, index_t n, T scale) {
  constexpr index_t L = kLanes<T>;
  const Vec<T> vs = set1(scale);
  index_t i = 0;
  for (; i + L <= n; i += L) {
    // x * 0 (not a select) so a dropped NaN stays NaN, as x * mask in PyTorch.
    store(y + i, load(x + i) * select(mask_bits<T>(mask, i), vs, zero<T>()));
  }
  for (; i < n; ++i) y[i] = x[i] * (((mask[i / 8] >> (i % 8)) & 1) ? scale : T(0));
}

// ---- losses ----------------------------------------------------------------------------------------

// logits (rows, C); per row: max, then exp(x - m) into `scratch` (C values, the
// caller's per-thread buffer, stays in L1/L2) with its sums, then dlogits
// written once from scratch (streamed when `stream`).
template <class T>
void cross_entropy_kernel(T* dlogits, double* row_loss, T* scratch, const T* logits, const std::int64_t* labels,
                          index_t rows, index_t C, T eps, T grad_scale, bool stream) {
  constexpr index_t L = kLanes<T>;
  const index_t full = C / L * L, rem = C - full;
  constexpr T kInf = std::numeric_limits<T>::infinity();  // constant: no call out of the ISA namespace
  const Vec<T> neg_inf = set1(-kInf);
  const Mask<T> tail = first_lanes<T>(rem);
  for (index_t r = 0; r < rows; ++r) {
    const T* x = logits + r * C;
    // 1st pass: the row maximum.
    Vec<T> vmax = neg_inf;
    for (index_t j = 0; j < full; j += L) vmax = max(vmax, load(x + j));
    if (rem) vmax = max(vmax, select(tail, load_partial(x + full, rem), neg_inf));
    const T m = hmax(vmax);
    // 2nd pass: sum of exp(x - m) (kept in scratch) and of (m - x) for smoothing.
    const Vec<T> vm = set1(m);
    Vec<T> vsum = zero<T>(), vdev = zero<T>();
    T* d = dlogits != nullptr ? dlogits + r * C : nullptr;
    for (index_t j = 0; j < full; j += L) {
      const Vec<T> dev = vm - load(x + j);
      const Vec<T> e = exp(-dev);
      vsum += e;
      vdev += dev;
      if (d) store(scratch + j, e);
    }
    if (rem) {
      const Vec<T> dev = select(tail, vm - load_partial(x + full, rem), zero<T>());
      const Vec<T> e = select(tail, exp(-dev), zero<T>());
      vsum += e;
      vdev += dev;
      if (d) store_partial(scratch + full, e, rem);
    }
    const double s = static_cast<double>(hsum(vsum));
    const double dev_sum = static_cast<double>(hsum(vdev));
    const index_t label = labels[r];
    // lse - x_label = log(s) + (m - x_label) >= 0: no cancellation, stable for large logits.
    // A term whose weight is 0 is left out, not multiplied: a masked (-inf) logit makes its
    // deviation +inf, and 0 * inf would turn PyTorch's finite loss into NaN.
    const double ls = static_cast<double>(eps);
    double loss = std::log(s);
    if (ls != 1.0) loss += (1.0 - ls) * (static_cast<double>(m) - static_cast<double>(x[label]));
    if (ls != 0.0) loss += ls / static_cast<double>(C) * dev_sum;
    row_loss[r] = loss;
    if (d) {
      // 3rd pass: d = grad_scale * (e / s - eps / C), minus (1 - eps) at the label.
      const T inv = static_cast<T>(static_cast<double>(grad_scale) / s);
      const T off = static_cast<T>(static_cast<double>(grad_scale) * ls / static_cast<double>(C));
      map1(d, scratch, C, stream, [inv, off](Vec<T> e) { return e * inv - off; });
      d[label] -= static_cast<T>(static_cast<double>(grad_scale) * (1.0 - ls));
    }
  }
}

template <class T>
double squared_error_kernel(T* d, const T* x, const T* t, index_t n, T grad_scale) {
  constexpr index_t L = kLanes<T>;
  const index_t full = n / L * L, rem = n - full;
  Vec<T> acc0 = zero<T>(), acc1 = zero<T>();
  index_t i = 0;
  for (; i + 2 * L <= full; i += 2 * L) {
    const Vec<T> e0 = load(x + i) - load(t + i);
    const Vec<T> e1 = load(x + i + L) - load(t + i + L);
    acc0 += e0 * e0;
    acc1 += e1 * e1;
    if (d) {
      store(d + i, e0 * grad_scale);
      store(d + i + L, e1 * grad_scale);
    }
  }
  for (; i < full; i += L) {
    const Vec<T> e0 = load(x + i) - load(t + i);
    acc0 += e0 * e0;
    if (d) store(d + i, e0 * grad_scale);
  }
  if (rem) {
    const Vec<T> e0 = load_partial(x + full, rem) - load_partial(t + full, rem);  // padded lanes give 0
    acc1 += e0 * e0;
    if (d) store_partial(d + full, e0 * grad_scale, rem);
  }
  return static_cast<double>(hsum(acc0 + acc1));
}

// ---- the table ------------------------------------------------------------------------------------

// Every activation, once: fill_kernels sets the forward and backward kernel of each.
template <Act... A>
struct ActList {};
constexpr ActList<Act::sigmoid, Act::tanh, Act::relu, Act::leaky_relu, Act::elu, Act::gelu> kActs{};

template <class T, Act... A>
constexpr void fill_kernels(EltwiseKernels<T>& k, ActList<A...>) {
  ((k.forward[static_cast<int>(A)] = act_forward_kernel<T, A>,
    k.backward[static_cast<int>(A)] = act_backward_kernel<T, A>), ...);
  k.dropout_apply = dropout_apply_kernel<T>;
  k.cross_entropy = cross_entropy_kernel<T>;
  k.squared_error = squared_error_kernel<T>;
}

constexpr void fill_table(EltwiseTable& t) {
  t.dropout_mask = dropout_mask_kernel;
  fill_kernels(t.f32, kActs);
  fill_kernels(t.f64, kActs);
}

}  // namespace eltwise
}  // namespace gk::GK_ISA_NS
