// Normalization micro-kernels (the NormKernels contract of gradkit/norm.h),
// written once as plain loops and compiled per ISA: cpp/ref/norm_ref.cpp
// (generic), cpp/x86/avx2/norm_avx2.cpp and cpp/x86/avx512/norm_avx512.cpp each
// define GK_ISA_NS and include this file, so every ISA gets its own copy in
// namespace gk::GK_ISA_NS (docs/design.md: one ISA, one namespace).
//
// Reductions keep 4 vectors of lanes in T over blocks of at most kNormBlock
// elements, fold the lanes in a fixed tree and add each block to a double:
// the result depends only on the data and the ISA, never on the thread count.
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2, avx512) before including norm_impl.h"
#endif

#include "gradkit/norm.h"
#include "gradkit/pool2x2.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS {
namespace norm_detail {

using simd::kVecBytes;  // this ISA's vector width in bytes

// (*r1, *r2) = sums over nrows rows of n elements of what f(r, i, s1, s2) adds to its
// lane sums for element i of row r. Lanes carry across rows (short rows cost no fold
// each) and are folded into the double sums after at most kNormBlock elements.
template <class T, class F>
GK_ALWAYS_INLINE void reduce2(index_t nrows, index_t n, F&& f, double* r1, double* r2) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  constexpr int L = 4 * W;  // four independent vector accumulators per sum
  double d1 = 0, d2 = 0;
  T a1[L], a2[L];
  for (int j = 0; j < L; ++j) a1[j] = a2[j] = T(0);
  index_t held = 0;  // elements in the lanes since the last fold
  auto fold = [&] {
    for (int w = L / 2; w >= 1; w /= 2) {
#pragma omp simd
      for (int j = 0; j < w; ++j) {
        a1[j] += a1[j + w];
        a2[j] += a2[j + w];
      }
    }
    d1 += static_cast<double>(a1[0]);
    d2 += static_cast<double>(a2[0]);
    for (int j = 0; j < L; ++j) a1[j] = a2[j] = T(0);
    held = 0;
  };
  for (index_t r = 0; r < nrows; ++r) {
    for (index_t b0 = 0; b0 < n; b0 += kNormBlock) {
      const index_t b1 = min(n, b0 + kNormBlock);
      if (held + (b1 - b0) > kNormBlock) fold();
      held += b1 - b0;
      index_t i = b0;
      for (; i + L <= b1; i += L) {
#pragma omp simd
        for (int j = 0; j < L; ++j) f(r, i + j, a1[j], a2[j]);
      }
      for (; i + W <= b1; i += W) {
#pragma omp simd
        for (int j = 0; j < W; ++j) f(r, i + j, a1[j], a2[j]);
      }
      for (int j = 0; i < b1; ++i, ++j) f(r, i, a1[j], a2[j]);
    }
  }
  fold();
  *r1 = d1;
  *r2 = d2;
}

// x: nrows rows of n, row r at x + r * stride; serial.
template <class T>
void rows_stats(const T* GK_RESTRICT x, index_t nrows, index_t n, index_t stride, T k, double* s1, double* s2) {
  reduce2<T>(nrows, n, [&](index_t r, index_t i, T& u, T& v) {
    const T d = x[r * stride + i] - k;
    u += d;
    v += d * d;
  }, s1, s2);
}

template <class T>
void rows_dot(const T* GK_RESTRICT dy, const T* GK_RESTRICT x, index_t nrows, index_t n, index_t stride, T k,
              double* s1, double* s2) {
  reduce2<T>(nrows, n, [&](index_t r, index_t i, T& u, T& v) {
    const T g = dy[r * stride + i];
    u += g;
    v += g * (x[r * stride + i] - k);
  }, s1, s2);
}

// nrows rows of n, row r at offset r * stride in y and x alike: y = a * (x - k) + b.
template <class T>
void rows_affine(T* GK_RESTRICT y, const T* GK_RESTRICT x, index_t nrows, index_t n, index_t stride, T k, T a, T b) {
  for (index_t r = 0; r < nrows; ++r) {
    T* yr = y + r * stride;
    const T* xr = x + r * stride;
#pragma omp simd
    for (index_t i = 0; i < n; ++i) yr[i] = a * (xr[i] - k) + b;
  }
}

template <class T>
void rows_backward(T* GK_RESTRICT dx, const T* GK_RESTRICT dy, const T* GK_RESTRICT x, index_t nrows, index_t n,
                   index_t stride, T k, T a, T b, T c) {
  for (index_t r = 0; r < nrows; ++r) {
    const index_t o = r * stride;
#pragma omp simd
    for (index_t i = 0; i < n; ++i) dx[o + i] = a * dy[o + i] + (b * (x[o + i] - k) + c);
  }
}

// ReLU as eltwise's: v < 0 ? 0 : v keeps NaN; its gradient passes dy where y > 0 or y is NaN.
template <class T>
GK_ALWAYS_INLINE T relu_fwd(T v) { return v < T(0) ? T(0) : v; }
template <class T>
GK_ALWAYS_INLINE T relu_bwd(T dy, T y) { return y <= T(0) ? T(0) : dy; }

// y = relu(a * (x - k) + b + res) (res null: no residual), rows as rows_affine.
template <class T, bool kRes>
void rows_affine_relu_impl(T* GK_RESTRICT y, const T* GK_RESTRICT x, const T* GK_RESTRICT res, index_t nrows,
                           index_t n, index_t stride, T k, T a, T b) {
  for (index_t r = 0; r < nrows; ++r) {
    const index_t o = r * stride;
#pragma omp simd
    for (index_t i = 0; i < n; ++i) {
      const T v = a * (x[o + i] - k) + b;
      y[o + i] = relu_fwd(kRes ? v + res[o + i] : v);
    }
  }
}

template <class T>
void rows_affine_relu(T* y, const T* x, const T* res, index_t nrows, index_t n, index_t stride, T k, T a, T b) {
  if (res != nullptr) {
    rows_affine_relu_impl<T, true>(y, x, res, nrows, n, stride, k, a, b);
  } else {
    rows_affine_relu_impl<T, false>(y, x, res, nrows, n, stride, k, a, b);
  }
}

// g = relu_bwd(dy, y): s1 = sum g, s2 = sum g * (x - k); g stored to gout unless null.
template <class T, bool kStore>
void rows_dot_relu_impl(const T* GK_RESTRICT dy, const T* GK_RESTRICT y, const T* GK_RESTRICT x, T* GK_RESTRICT gout,
                        index_t nrows, index_t n, index_t stride, T k, double* s1, double* s2) {
  reduce2<T>(nrows, n, [&](index_t r, index_t i, T& u, T& v) {
    const index_t o = r * stride + i;
    const T g = relu_bwd(dy[o], y[o]);
    if (kStore) gout[o] = g;
    u += g;
    v += g * (x[o] - k);
  }, s1, s2);
}

template <class T>
void rows_dot_relu(const T* dy, const T* y, const T* x, T* gout, index_t nrows, index_t n, index_t stride, T k,
                   double* s1, double* s2) {
  if (gout != nullptr) {
    rows_dot_relu_impl<T, true>(dy, y, x, gout, nrows, n, stride, k, s1, s2);
  } else {
    rows_dot_relu_impl<T, false>(dy, y, x, gout, nrows, n, stride, k, s1, s2);
  }
}

// dx = a * relu_bwd(dy, y) + b * (x - k) + c.
template <class T>
void rows_backward_relu(T* GK_RESTRICT dx, const T* GK_RESTRICT dy, const T* GK_RESTRICT y, const T* GK_RESTRICT x,
                        index_t nrows, index_t n, index_t stride, T k, T a, T b, T c) {
  for (index_t r = 0; r < nrows; ++r) {
    const index_t o = r * stride;
#pragma omp simd
    for (index_t i = 0; i < n; ++i) dx[o + i] = a * relu_bwd(dy[o + i], y[o + i]) + (b * (x[o + i] - k) + c);
  }
}

// x (rows, cols) row-major; per-column k; sums added into s1, s2 (cols,).
template <class T>
void col_stats(const T* GK_RESTRICT x, index_t rows, index_t cols, const T* GK_RESTRICT k, double* GK_RESTRICT s1,
               double* GK_RESTRICT s2) {
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(xr[j] - k[j]);
      s1[j] += d;
      s2[j] += d * d;
    }
  }
}

template <class T>
void col_affine(T* GK_RESTRICT y, const T* GK_RESTRICT x, index_t rows, index_t cols, const T* GK_RESTRICT k,
                const T* GK_RESTRICT a, const T* GK_RESTRICT b) {
  for (index_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) y[r * cols + j] = a[j] * (x[r * cols + j] - k[j]) + b[j];
  }
}

template <class T>
void col_dot(const T* GK_RESTRICT dy, const T* GK_RESTRICT x, index_t rows, index_t cols, const T* GK_RESTRICT k,
             double* GK_RESTRICT s1, double* GK_RESTRICT s2) {
  for (index_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const T g = dy[r * cols + j];
      s1[j] += static_cast<double>(g);
      s2[j] += static_cast<double>(g * (x[r * cols + j] - k[j]));
    }
  }
}

template <class T>
void col_backward(T* GK_RESTRICT dx, const T* GK_RESTRICT dy, const T* GK_RESTRICT x, index_t rows, index_t cols,
                  const T* GK_RESTRICT k, const T* GK_RESTRICT a, const T* GK_RESTRICT b, const T* GK_RESTRICT c) {
  for (index_t r = 0; r < rows; ++r) {
    const index_t o = r * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) dx[o + j] = a[j] * dy[o + j] + (b[j] * (x[o + j] - k[j]) + c[j]);
  }
}

// The (N, C) layout of the three above: per-column k, a, b, c; sums added into s1, s2 (cols,).
template <class T>
void col_affine_relu(T* GK_RESTRICT y, const T* GK_RESTRICT x, const T* GK_RESTRICT res, index_t rows, index_t cols,
                     const T* GK_RESTRICT k, const T* GK_RESTRICT a, const T* GK_RESTRICT b) {
  for (index_t r = 0; r < rows; ++r) {
    const index_t o = r * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const T v = a[j] * (x[o + j] - k[j]) + b[j];
      y[o + j] = relu_fwd(res != nullptr ? v + res[o + j] : v);
    }
  }
}

template <class T>
void col_dot_relu(const T* GK_RESTRICT dy, const T* GK_RESTRICT y, const T* GK_RESTRICT x, T* GK_RESTRICT gout,
                  index_t rows, index_t cols, const T* GK_RESTRICT k, double* GK_RESTRICT s1,
                  double* GK_RESTRICT s2) {
  for (index_t r = 0; r < rows; ++r) {
    const index_t o = r * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const T g = relu_bwd(dy[o + j], y[o + j]);
      if (gout != nullptr) gout[o + j] = g;
      s1[j] += static_cast<double>(g);
      s2[j] += static_cast<double>(g * (x[o + j] - k[j]));
    }
  }
}

template <class T>
void col_backward_relu(T* GK_RESTRICT dx, const T* GK_RESTRICT dy, const T* GK_RESTRICT y, const T* GK_RESTRICT x,
                       index_t rows, index_t cols, const T* GK_RESTRICT k, const T* GK_RESTRICT a,
                       const T* GK_RESTRICT b, const T* GK_RESTRICT c) {
  for (index_t r = 0; r < rows; ++r) {
    const index_t o = r * cols;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      dx[o + j] = a[j] * relu_bwd(dy[o + j], y[o + j]) + (b[j] * (x[o + j] - k[j]) + c[j]);
    }
  }
}

template <class T, bool kAffine>
void ln_row_forward_impl(T* GK_RESTRICT y, const T* GK_RESTRICT x, index_t n, T k, T a, T c, const T* GK_RESTRICT w,
                         const T* GK_RESTRICT b) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    const T xh = a * (x[i] - k) + c;
    y[i] = kAffine ? xh * w[i] + b[i] : xh;
  }
}

template <class T>
void ln_row_forward(T* y, const T* x, index_t n, T k, T a, T c, const T* w, const T* b) {
  if (w != nullptr && b != nullptr) {
    ln_row_forward_impl<T, true>(y, x, n, k, a, c, w, b);
  } else if (w == nullptr && b == nullptr) {
    ln_row_forward_impl<T, false>(y, x, n, k, a, c, w, b);
  } else {  // one of the two: the rare case, a plain loop
    for (index_t i = 0; i < n; ++i) {
      const T xh = a * (x[i] - k) + c;
      y[i] = (w ? xh * w[i] : xh) + (b ? b[i] : T(0));
    }
  }
}

// Two passes over the row (it stays in L1/L2): the sums, then dx and dw/db.
template <class T, bool kWeight, bool kParamGrad>
void ln_row_backward_impl(T* GK_RESTRICT dx, T* GK_RESTRICT dw, T* GK_RESTRICT db, const T* GK_RESTRICT dy,
                          const T* GK_RESTRICT x, index_t n, T k, T a, T c, const T* GK_RESTRICT w) {
  double s1, s2;
  reduce2<T>(1, n, [&](index_t, index_t i, T& u, T& v) {
    const T g = kWeight ? dy[i] * w[i] : dy[i];
    u += g;
    v += g * (a * (x[i] - k) + c);
  }, &s1, &s2);
  const T m1 = static_cast<T>(static_cast<double>(a) * s1 / static_cast<double>(n));
  const T m2 = static_cast<T>(static_cast<double>(a) * s2 / static_cast<double>(n));
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    const T g = kWeight ? dy[i] * w[i] : dy[i];
    const T xh = a * (x[i] - k) + c;
    dx[i] = a * g - (m1 + xh * m2);
    if (kParamGrad) {
      dw[i] += dy[i] * xh;
      db[i] += dy[i];
    }
  }
}

template <class T>
void ln_row_backward(T* dx, T* dw, T* db, const T* dy, const T* x, index_t n, T k, T a, T c, const T* w) {
  // dw and db come together (the driver passes both or neither).
  if (w != nullptr) {
    if (dw != nullptr) ln_row_backward_impl<T, true, true>(dx, dw, db, dy, x, n, k, a, c, w);
    else ln_row_backward_impl<T, true, false>(dx, dw, db, dy, x, n, k, a, c, w);
  } else {
    if (dw != nullptr) ln_row_backward_impl<T, false, true>(dx, dw, db, dy, x, n, k, a, c, w);
    else ln_row_backward_impl<T, false, false>(dx, dw, db, dy, x, n, k, a, c, w);
  }
}

// Batch norm + ReLU + MaxPool2d(2): planes of (H, W), outputs (H/2, W/2); see NormKernels::bnrp_*.
// Output row oh reads the input row pair 2*oh, 2*oh + 1 a vector of outputs at a time (gradkit/pool2x2.h).

// Stores and loads of a row's first n lanes inside a plane ending at `end`, processed in increasing
// address order: a whole vector whenever it stays inside the plane (the lanes past n land on
// elements written later), a masked one only at the plane's end (AVX2's masked stores, and the
// variable-length copies of bytes, are slow: on AMD cores by far).
template <class T>
GK_ALWAYS_INLINE void store_in(T* p, simd::Vec<T> v, index_t n, const T* end) {
  if (p + simd::kLanes<T> <= end) {
    simd::store(p, v);
  } else {
    simd::store_first(p, v, n);
  }
}

template <class T>
GK_ALWAYS_INLINE void store_bytes_in(std::uint8_t* p, simd::Mask<T> c, index_t n, const std::uint8_t* end) {
  if (p + simd::kLanes<T> <= end) {
    simd::store_bytes<T>(p, c, simd::kLanes<T>);  // a fixed-size copy: one store
  } else {
    simd::store_bytes<T>(p, c, n);
  }
}

// The first n codes at p (the others kPoolNoGrad) of a plane ending at `end`.
template <class T>
GK_ALWAYS_INLINE simd::Mask<T> load_bytes_in(const std::uint8_t* p, index_t n, const std::uint8_t* end) {
  if (p + simd::kLanes<T> <= end) {
    const simd::Mask<T> c = simd::load_bytes<T>(p, simd::kLanes<T>, kPoolNoGrad);
    return n >= simd::kLanes<T> ? c : (simd::first_lanes<T>(n) ? c : simd::mask_set1<T>(kPoolNoGrad));
  }
  return simd::load_bytes<T>(p, n, kPoolNoGrad);
}

template <class T>
void bnrp_forward(T* GK_RESTRICT y, std::uint8_t* GK_RESTRICT code, const T* GK_RESTRICT x, index_t nrows, index_t H,
                  index_t W, index_t stride, index_t ostride, T k, T a, T b) {
  using namespace pool2x2;
  using VT = simd::Vec<T>;
  using MT = simd::Mask<T>;
  constexpr index_t L = simd::kLanes<T>;
  const index_t OH = H / 2, OW = W / 2;
  const VT vk = simd::set1(k), va = simd::set1(a), vb = simd::set1(b);
  for (index_t r = 0; r < nrows; ++r) {
    for (index_t oh = 0; oh < OH; ++oh) {
      const T* x0 = x + r * stride + 2 * oh * W;
      const T* x1 = x0 + W;
      T* yo = y + r * ostride + oh * OW;
      std::uint8_t* co = code + r * ostride + oh * OW;
      const T* yend = y + r * ostride + OH * OW;
      const std::uint8_t* cend = code + r * ostride + OH * OW;
      for (index_t o0 = 0; o0 < OW; o0 += L) {
        const index_t n = OW - o0, nin = W - 2 * o0;
        VT e0, d0, e1, d1;
        load_pairs(x0 + 2 * o0, nin, e0, d0);
        load_pairs(x1 + 2 * o0, nin, e1, d1);
        e0 = va * (e0 - vk) + vb;
        d0 = va * (d0 - vk) + vb;
        e1 = va * (e1 - vk) + vb;
        d1 = va * (d1 - vk) + vb;
        VT m;
        MT j;
        window_max<T>(e0, d0, e1, d1, m, j);
        const MT pass = (m > VT{}) | (m != m);  // ReLU: a gradient flows where its output is > 0 (or NaN)
        store_in(yo + o0, pass ? m : VT{}, n, yend);
        store_bytes_in<T>(co + o0, pass ? j : simd::mask_set1<T>(kPoolNoGrad), n, cend);
      }
    }
  }
}

template <class T>
void bnrp_dot(const T* GK_RESTRICT dy, const std::uint8_t* GK_RESTRICT code, const T* GK_RESTRICT x, index_t nrows,
              index_t H, index_t W, index_t stride, index_t ostride, T k, double* s1, double* s2) {
  using namespace pool2x2;
  using VT = simd::Vec<T>;
  using MT = simd::Mask<T>;
  constexpr index_t L = simd::kLanes<T>;
  const index_t OH = H / 2, OW = W / 2;
  const VT vk = simd::set1(k);
  double d1 = 0, d2 = 0;
  for (index_t r = 0; r < nrows; ++r) {
    VT u{}, v{};  // one plane's sums in T lanes, then in double
    for (index_t oh = 0; oh < OH; ++oh) {
      const T* x0 = x + r * stride + 2 * oh * W;
      const T* x1 = x0 + W;
      const T* g = dy + r * ostride + oh * OW;
      const std::uint8_t* co = code + r * ostride + oh * OW;
      const std::uint8_t* cend = code + r * ostride + OH * OW;
      for (index_t o0 = 0; o0 < OW; o0 += L) {
        const index_t n = OW - o0, nin = W - 2 * o0;
        const MT c = load_bytes_in<T>(co + o0, n, cend);
        VT e0, p0, e1, p1;
        load_pairs(x0 + 2 * o0, nin, e0, p0);
        load_pairs(x1 + 2 * o0, nin, e1, p1);
        const VT xv = c == 0 ? e0 : c == 1 ? p0 : c == 2 ? e1 : p1;
        const MT valid = c < 4;
        const VT gv = valid ? simd::load_first(g + o0, n) : VT{};
        u += gv;
        v += valid ? gv * (xv - vk) : VT{};
      }
    }
    d1 += static_cast<double>(simd::hsum(u));
    d2 += static_cast<double>(simd::hsum(v));
  }
  *s1 = d1;
  *s2 = d2;
}

template <class T>
index_t bnrp_backward(T* GK_RESTRICT dx, const T* GK_RESTRICT dy, const std::uint8_t* GK_RESTRICT code,
                      const T* GK_RESTRICT x, index_t nrows, index_t H, index_t W, index_t stride, index_t ostride,
                      T k, T a, T b, T c) {
  using namespace pool2x2;
  using VT = simd::Vec<T>;
  using MT = simd::Mask<T>;
  constexpr index_t L = simd::kLanes<T>;
  const index_t OH = H / 2, OW = W / 2;
  const VT vk = simd::set1(k), va = simd::set1(a), vb = simd::set1(b), vc = simd::set1(c);
  MT nbad{};
  // dx = b * (x - k) + c, plus the pooled gradient a * dy at each window's max position (e and o: the
  // gradients of the even and odd columns)
  const T* dend = nullptr;  // the current plane's end
  auto row = [&](T* d, const T* xr, index_t nin, VT e, VT o) {
    VT g0, g1;
    simd::interleave(e, o, g0, g1);
    store_in(d, (vb * (simd::load_first(xr, nin) - vk) + vc) + g0, nin, dend);
    if (nin > L) store_in(d + L, (vb * (simd::load_first(xr + L, nin - L) - vk) + vc) + g1, nin - L, dend);
  };
  for (index_t r = 0; r < nrows; ++r) {
    const T* xp = x + r * stride;
    T* dxp = dx + r * stride;
    dend = dxp + H * W;
    const std::uint8_t* cend = code + r * ostride + OH * OW;
    for (index_t oh = 0; oh < OH; ++oh) {
      const T* x0 = xp + 2 * oh * W;
      const T* x1 = x0 + W;
      T* d0 = dxp + 2 * oh * W;
      T* d1 = d0 + W;
      const T* g = dy + r * ostride + oh * OW;
      const std::uint8_t* co = code + r * ostride + oh * OW;
      // the upper row whole, then the lower one (the stores run in address order: see store_in)
      for (int dh = 0; dh < 2; ++dh) {
        for (index_t o0 = 0; o0 < OW; o0 += L) {
          const index_t n = OW - o0, nin = W - 2 * o0;
          const MT cw = load_bytes_in<T>(co + o0, n, cend);
          if (dh == 0) nbad -= (cw >= 4) & (cw != kPoolNoGrad);
          const VT t = va * simd::load_first(g + o0, n);
          const MT ce = cw == 2 * dh;
          const MT cd = cw == 2 * dh + 1;
          row((dh == 0 ? d0 : d1) + 2 * o0, (dh == 0 ? x0 : x1) + 2 * o0, nin, ce ? t : VT{}, cd ? t : VT{});
        }
      }
      if (W % 2 != 0) {  // the last column is in no window
        d0[W - 1] = b * (x0[W - 1] - k) + c;
        d1[W - 1] = b * (x1[W - 1] - k) + c;
      }
    }
    if (H % 2 != 0) {  // nor is the last row
      const T* xl = xp + (H - 1) * W;
      T* dl = dxp + (H - 1) * W;
      for (index_t i = 0; i < W; i += L) {
        simd::store_first(dl + i, vb * (simd::load_first(xl + i, W - i) - vk) + vc, W - i);
      }
    }
  }
  index_t bad = 0;
  for (index_t j = 0; j < L; ++j) bad += static_cast<index_t>(nbad[j]);
  return bad;
}

template <class T>
constexpr void fill(NormKernels<T>& t) {
  t.rows_stats = rows_stats<T>;
  t.rows_affine = rows_affine<T>;
  t.rows_dot = rows_dot<T>;
  t.rows_backward = rows_backward<T>;
  t.col_stats = col_stats<T>;
  t.col_affine = col_affine<T>;
  t.col_dot = col_dot<T>;
  t.col_backward = col_backward<T>;
  t.rows_affine_relu = rows_affine_relu<T>;
  t.rows_dot_relu = rows_dot_relu<T>;
  t.rows_backward_relu = rows_backward_relu<T>;
  t.col_affine_relu = col_affine_relu<T>;
  t.col_dot_relu = col_dot_relu<T>;
  t.col_backward_relu = col_backward_relu<T>;
  t.ln_row_forward = ln_row_forward<T>;
  t.ln_row_backward = ln_row_backward<T>;
  t.bnrp_forward = bnrp_forward<T>;
  t.bnrp_dot = bnrp_dot<T>;
  t.bnrp_backward = bnrp_backward<T>;
}

}  // namespace norm_detail

constexpr void fill_norm_table(NormTable& t) {
  norm_detail::fill(t.f32);
  norm_detail::fill(t.f64);
}

}  // namespace gk::GK_ISA_NS
