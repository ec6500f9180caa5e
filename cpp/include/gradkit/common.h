// Basic types and attributes shared by every gradkit source file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

#define GK_RESTRICT __restrict__
#define GK_ALWAYS_INLINE inline __attribute__((always_inline))

namespace gk {

// Sizes, strides and offsets: signed 64-bit everywhere (NumPy's npy_intp).
using index_t = std::int64_t;

// Ceiling division for non-negative values.
constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
constexpr index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

// A 64-byte aligned scratch array (move-only). Use it in generic driver code and
// pass raw pointers to per-ISA kernels (they must not instantiate std containers).
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(index_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~AlignedBuffer() { std::free(p_); }

  // Grows to at least n elements (contents are not kept); never shrinks.
  void resize(index_t n) {
    if (n <= n_) return;
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
    const size_t bytes = static_cast<size_t>(round_up(n * static_cast<index_t>(sizeof(T)), 64));
    p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (p_ == nullptr) throw std::bad_alloc();
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  index_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  index_t n_ = 0;
};

}  // namespace gk
