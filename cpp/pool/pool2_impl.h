// 2x2 stride-2 windows in SIMD: the building blocks of MaxPool2d(2) (pool_impl.h) and of the fused
// batch norm + ReLU + MaxPool2d(2) (norm/norm_impl.h), compiled once per ISA (the includer defines
// GK_ISA_NS). One vector of outputs reads two vectors of each input row, split into even and odd
// columns; a row's last chunk is loaded and stored with masks (simd.h's partial loads/stores), so
// rows shorter than a vector (28 x 28 planes give 14 outputs) cost no scalar tail.
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including a kernel template header"
#endif
#include <cstdint>
#include <cstring>

#include "gradkit/common.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS::pool2 {

template <class T>
using V = simd::Vec<T>;
template <class T>
using M = simd::Mask<T>;
template <class T>
constexpr index_t kL = simd::kLanes<T>;
template <class T>
struct Bytes {  // one uint8 per lane
  typedef std::uint8_t type __attribute__((vector_size(simd::kLanes<T>)));
};
template <class T>
struct Int32s {  // one int32 per lane
  typedef std::int32_t type __attribute__((vector_size(4 * simd::kLanes<T>)));
};

// The first n lanes from p (n <= 0 gives zeros, n >= kL a whole vector).
template <class T>
GK_ALWAYS_INLINE V<T> ld(const T* p, index_t n) {
  if (n >= kL<T>) return simd::load(p);
  return n > 0 ? simd::load_partial(p, n) : V<T>{};
}

// Stores the first n lanes of v (none for n <= 0).
template <class T>
GK_ALWAYS_INLINE void st(T* p, V<T> v, index_t n) {
  if (n >= kL<T>) simd::store(p, v);
  else if (n > 0) simd::store_partial(p, v, n);
}

// The first nin of the 2L values at p as even and odd columns (missing values are 0).
template <class T>
GK_ALWAYS_INLINE void load_pairs(const T* p, index_t nin, V<T>& ev, V<T>& od) {
  const V<T> a = ld(p, nin), b = ld(p + kL<T>, nin - kL<T>);
  M<T> me, mo;
  for (index_t j = 0; j < kL<T>; ++j) {
    me[j] = static_cast<simd::elem_t<M<T>>>(2 * j);
    mo[j] = static_cast<simd::elem_t<M<T>>>(2 * j + 1);
  }
  ev = __builtin_shuffle(a, b, me);
  od = __builtin_shuffle(a, b, mo);
}

// (e0, o0, e1, o1, ...) as two vectors: the inverse of load_pairs.
template <class T>
GK_ALWAYS_INLINE void interleave(V<T> e, V<T> o, V<T>& lo, V<T>& hi) {
  M<T> ml, mh;
  for (index_t j = 0; j < kL<T>; ++j) {
    ml[j] = static_cast<simd::elem_t<M<T>>>((j % 2 == 0 ? 0 : kL<T>) + j / 2);
    mh[j] = static_cast<simd::elem_t<M<T>>>((j % 2 == 0 ? 0 : kL<T>) + kL<T> / 2 + j / 2);
  }
  lo = __builtin_shuffle(e, o, ml);
  hi = __builtin_shuffle(e, o, mh);
}

// The max of each window (row pair (e0, o0) over (e1, o1)) and its position j = dh * 2 + dw: the first
// max of the scan in raster order, NaN winning, as MaxPool2d. Along each row first, then down, which
// picks the same element as the scan.
template <class T>
GK_ALWAYS_INLINE void window_max(V<T> e0, V<T> o0, V<T> e1, V<T> o1, V<T>& m, M<T>& j) {
  const M<T> t1 = (o0 > e0) | (o0 != o0);
  const M<T> t3 = (o1 > e1) | (o1 != o1);
  const V<T> top = t1 ? o0 : e0, bot = t3 ? o1 : e1;
  const M<T> down = (bot > top) | (bot != bot);
  m = down ? bot : top;
  j = (down & 2) | ((down ? t3 : t1) & 1);
}

// The first n bytes at p as lanes; the other lanes get `fill`.
template <class T>
GK_ALWAYS_INLINE M<T> load_bytes(const std::uint8_t* p, index_t n, std::uint8_t fill) {
  typename Bytes<T>::type u;
  n = min(n, kL<T>);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  // one masked load (a variable-length memcpy is a library call per row)
  const __m128i v = _mm_mask_loadu_epi8(_mm_set1_epi8(static_cast<char>(fill)),
                                        static_cast<__mmask16>((1u << n) - 1u), p);
  std::memcpy(&u, &v, sizeof(u));
#else
  for (index_t j = 0; j < kL<T>; ++j) u[j] = fill;
  std::memcpy(&u, p, static_cast<size_t>(n));
#endif
  return __builtin_convertvector(u, M<T>);
}

// The first n lanes of c (values 0..255) as bytes at p.
template <class T>
GK_ALWAYS_INLINE void store_bytes(std::uint8_t* p, M<T> c, index_t n) {
  const auto u = __builtin_convertvector(c, typename Bytes<T>::type);
  n = min(n, kL<T>);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  __m128i v = _mm_setzero_si128();
  std::memcpy(&v, &u, sizeof(u));
  _mm_mask_storeu_epi8(p, static_cast<__mmask16>((1u << n) - 1u), v);
#else
  std::memcpy(p, &u, static_cast<size_t>(n));
#endif
}

// The first n lanes of c as int32 at p.
template <class T>
GK_ALWAYS_INLINE void store_int32(std::int32_t* p, M<T> c, index_t n) {
  const auto u = __builtin_convertvector(c, typename Int32s<T>::type);
  std::memcpy(p, &u, static_cast<size_t>(min(n, kL<T>)) * sizeof(std::int32_t));
}

}  // namespace gk::GK_ISA_NS::pool2
