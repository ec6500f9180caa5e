// Portable SIMD vectors for the conv/pool kernel templates (GCC/Clang vector
// extensions): one native register per vector, whatever the flags of the
// translation unit that includes this (16 bytes generic, 32 AVX2, 64 AVX-512).
// Include only after defining GK_ISA_NS (docs/design.md: one ISA, one namespace).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gradkit/common.h"

#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including a kernel template header"
#endif

namespace gk::GK_ISA_NS::cv {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

typedef float vf32 __attribute__((vector_size(kVecBytes), aligned(4)));
typedef double vf64 __attribute__((vector_size(kVecBytes), aligned(8)));

template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = vf32;
};
template <>
struct VecOf<double> {
  using type = vf64;
};
template <class T>
using Vec = typename VecOf<T>::type;
template <class T>
constexpr index_t kLanes = kVecBytes / static_cast<index_t>(sizeof(T));

// Unaligned load/store (the typedefs carry element alignment only).
template <class T>
GK_ALWAYS_INLINE Vec<T> load(const T* p) {
  return *reinterpret_cast<const Vec<T>*>(p);
}
template <class T>
GK_ALWAYS_INLINE void store(T* p, Vec<T> v) {
  *reinterpret_cast<Vec<T>*>(p) = v;
}
template <class T>
GK_ALWAYS_INLINE Vec<T> splat(T x) {
  return Vec<T>{} + x;
}
typedef std::int32_t vi32 __attribute__((vector_size(kVecBytes)));
typedef std::int64_t vi64 __attribute__((vector_size(kVecBytes)));
template <class T>
using IVec = std::conditional_t<sizeof(T) == 4, vi32, vi64>;

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
