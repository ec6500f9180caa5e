// MaxPool2d(2) on vectors: the 2x2 stride-2 window rule shared by pool/ (MaxPool2d(2)) and
// norm/ (the fused batch norm + ReLU + MaxPool2d(2)), on gradkit/simd.h; compiled once per
// ISA (the includer defines GK_ISA_NS). One vector of outputs reads two vectors of each input
// row, split into even and odd columns; a row's last chunk is loaded and stored with masks
// (simd::load_first / store_first), so rows shorter than a vector (28 x 28 planes give 14
// outputs) cost no scalar tail.
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including a kernel template header"
#endif
#include "gradkit/common.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS::pool2x2 {

// The first nin of the 2L values at p as even and odd columns (missing values are 0).
template <class T>
GK_ALWAYS_INLINE void load_pairs(const T* p, index_t nin, simd::Vec<T>& ev, simd::Vec<T>& od) {
  constexpr index_t L = simd::kLanes<T>;
  const simd::Vec<T> a = simd::load_first(p, nin), b = simd::load_first(p + L, nin - L);
  simd::deinterleave(a, b, ev, od);
}

// The max of each window (row pair (e0, o0) over (e1, o1)) and its position j = dh * 2 + dw: the first
// max of the scan in raster order, NaN winning, as MaxPool2d. Along each row first, then down, which
// picks the same element as the scan.
template <class T>
GK_ALWAYS_INLINE void window_max(simd::Vec<T> e0, simd::Vec<T> o0, simd::Vec<T> e1, simd::Vec<T> o1,
                                 simd::Vec<T>& m, simd::Mask<T>& j) {
  using M = simd::Mask<T>;
  const M t1 = (o0 > e0) | (o0 != o0);
  const M t3 = (o1 > e1) | (o1 != o1);
  const simd::Vec<T> top = t1 ? o0 : e0, bot = t3 ? o1 : e1;
  const M down = (bot > top) | (bot != bot);
  m = down ? bot : top;
  j = (down & 2) | ((down ? t3 : t1) & 1);
}

}  // namespace gk::GK_ISA_NS::pool2x2
