// Helpers for code compiled once per ISA (the includer defines GK_ISA_NS).
//
// An inline function or template outside gk::GK_ISA_NS that code compiled with
// an ISA's flags uses (std::min, std::fill, common.h's ceil_div) may be emitted
// as a weak symbol in that ISA's object file, and the linker keeps one copy for
// every caller, maybe the AVX-512 one (docs/design.md). So per-ISA code uses
// these copies, which live in its own namespace, instead.
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including a kernel template header"
#endif
#include <type_traits>

#include "gradkit/common.h"

namespace gk::GK_ISA_NS {

// This ISA's type: a shared template instantiated with it is a separate
// function per ISA (e.g. direct_pad_layout<IsaTag> of conv.h).
struct IsaTag {};

// std::min, std::max and std::clamp of scalars (the same results, NaN
// included); simd.h has the vector ones.
template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
GK_ALWAYS_INLINE constexpr T min(T a, T b) {
  return b < a ? b : a;
}
template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
GK_ALWAYS_INLINE constexpr T max(T a, T b) {
  return a < b ? b : a;
}
template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
GK_ALWAYS_INLINE constexpr T clamp(T x, T lo, T hi) {
  return x < lo ? lo : hi < x ? hi : x;
}
// std::fill.
template <class T>
GK_ALWAYS_INLINE void fill(T* first, T* last, T value) {
  for (; first != last; ++first) *first = value;
}
// common.h's ceil_div and round_up.
GK_ALWAYS_INLINE constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
GK_ALWAYS_INLINE constexpr index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

}  // namespace gk::GK_ISA_NS
