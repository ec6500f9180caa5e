// SIMD helpers for the conv/pool kernel templates on top of gradkit/simd.h (GCC/Clang
// vector extensions, one native register per vector: 16 bytes generic, 32 AVX2,
// 64 AVX-512): set1 and a fixed-order horizontal sum (the Winograd
// transforms have their own width-templated helpers in winograd_impl.h).
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
constexpr index_t kLanes = simd::kLanes<T>;
using simd::load;
using simd::store;
using simd::hsum;  // lanes summed in a fixed order (lane 0 first)
using simd::set1;


}  // namespace gk::GK_ISA_NS::cv
