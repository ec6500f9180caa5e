// Portable SIMD vectors for the conv/pool kernel templates (GCC/Clang vector
// extensions): one native register per vector, whatever the flags of the
// translation unit that includes this (16 bytes generic, 32 AVX2, 64 AVX-512).
// Include only after defining GK_ISA_NS (docs/design.md: one ISA, one namespace).
#pragma once
#include <cstring>

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
// Lanes summed in a fixed order (lane 0 first).
template <class T>
GK_ALWAYS_INLINE T hsum(Vec<T> v) {
  T s = v[0];
  for (index_t j = 1; j < kLanes<T>; ++j) s += v[j];
  return s;
}

}  // namespace gk::GK_ISA_NS::cv
