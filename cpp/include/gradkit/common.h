// Basic types and attributes shared by every gradkit source file.
#pragma once
#include <cstddef>
#include <cstdint>

#define GK_RESTRICT __restrict__
#define GK_ALWAYS_INLINE inline __attribute__((always_inline))

namespace gk {

// Sizes, strides and offsets: signed 64-bit everywhere (NumPy's npy_intp).
using index_t = std::int64_t;

// Ceiling division for non-negative values.
constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
constexpr index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

}  // namespace gk
