// SIMD helpers for the conv/pool kernel templates on top of gradkit/simd.h (GCC/Clang
// vector extensions, one native register per vector: 16 bytes generic, 32 AVX2,
// 64 AVX-512): splat, fixed-order horizontal sum, even/odd (de)interleave, short copies.
// Include only after defining GK_ISA_NS (docs/design.md: one ISA, one namespace).
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including a kernel template header"
#endif
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gradkit/common.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS::cv {

// The vector types and loads/stores of gradkit/simd.h; conv adds lane shuffles below.
template <class T>
using Vec = simd::Vec<T>;
template <class T>
using IVec = simd::Mask<T>;
template <class T>
constexpr index_t kLanes = simd::kLanes<T>;
using simd::load;
using simd::store;

template <class T>
GK_ALWAYS_INLINE Vec<T> splat(T x) {
  return Vec<T>{} + x;
}

// Even and odd elements of the 2L values at p: ev = (p0, p2, ...), od = (p1, p3, ...).
template <class T>
GK_ALWAYS_INLINE void deinterleave(const T* p, Vec<T>& ev, Vec<T>& od) {
  const Vec<T> a = load(p), b = load(p + kLanes<T>);
  IVec<T> me, mo;
  for (index_t j = 0; j < kLanes<T>; ++j) {
    me[j] = 2 * j;
    mo[j] = 2 * j + 1;
  }
  ev = __builtin_shuffle(a, b, me);
  od = __builtin_shuffle(a, b, mo);
}

// Stores (e0, o0, e1, o1, ...) to p[0 .. 2L).
template <class T>
GK_ALWAYS_INLINE void interleave(T* p, Vec<T> e, Vec<T> o) {
  constexpr index_t L = kLanes<T>;
  IVec<T> lo, hi;
  for (index_t j = 0; j < L; ++j) {
    lo[j] = (j % 2 == 0 ? 0 : L) + j / 2;
    hi[j] = (j % 2 == 0 ? 0 : L) + L / 2 + j / 2;
  }
  store(p, __builtin_shuffle(e, o, lo));
  store(p + L, __builtin_shuffle(e, o, hi));
}

// dst[0 .. n) = src[0 .. n) inline (short rows, where a memmove call would dominate: the
// tail is stored lane by lane from one vector, so the compiler emits no library call).
// src must be readable up to the next whole vector.
template <class T>
GK_ALWAYS_INLINE void copy_n(T* GK_RESTRICT dst, const T* GK_RESTRICT src, index_t n) {
  index_t k = 0;
  for (; k + kLanes<T> <= n; k += kLanes<T>) store(dst + k, load(src + k));
  if (k < n) {
    const Vec<T> v = load(src + k);
    for (index_t l = 0; l < n - k; ++l) dst[k + l] = v[l];
  }
}

// Lanes summed in a fixed order (lane 0 first).
template <class T>
GK_ALWAYS_INLINE T hsum(Vec<T> v) {
  T s = v[0];
  for (index_t j = 1; j < kLanes<T>; ++j) s += v[j];
  return s;
}

}  // namespace gk::GK_ISA_NS::cv
