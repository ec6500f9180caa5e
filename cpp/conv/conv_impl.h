// Conv kernel templates, compiled once per ISA (the includer defines GK_ISA_NS).
// Loops are over one image and one tile of whole output rows; the driver
// (conv.cpp) owns threading and scratch memory.
#pragma once
#include <algorithm>
#include <type_traits>

#include "gradkit/conv.h"
#include "simd_vec_impl.h"
#include "winograd_impl.h"

namespace gk::GK_ISA_NS {

namespace convk {

// Output columns ow whose input column ow*SW + off lies in [0, W): [lo, hi).
GK_ALWAYS_INLINE void valid_cols(index_t off, index_t SW, index_t W, index_t OW, index_t& lo, index_t& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, SW);
  hi = W - off <= 0 ? 0 : ceil_div(W - off, SW);
  lo = std::min(lo, OW);
  hi = std::max(lo, std::min(hi, OW));
}

// Visits every (col row, output row) pair of a tile: f(dst_row, src_row or null, lo, hi)
// where src_row[ow * SW] is the input of output column ow for ow in [lo, hi).
// TC and TX are T or const T: im2col writes col, col2im writes the image.
template <class TC, class TX, class F>
GK_ALWAYS_INLINE void for_each_tile_row(TC* col, TX* x_img, const ConvShape& s, index_t c0, index_t Cg, index_t oh0,
                                        index_t nrows, F&& f) {
  const index_t n = nrows * s.OW;
  for (index_t c = 0; c < Cg; ++c) {
    TX* xc = x_img + (c0 + c) * s.H * s.W;
    for (index_t kh = 0; kh < s.KH; ++kh) {
      for (index_t kw = 0; kw < s.KW; ++kw) {
        TC* row = col + ((c * s.KH + kh) * s.KW + kw) * n;
        const index_t off = kw * s.DW - s.PW;
        index_t lo, hi;
        valid_cols(off, s.SW, s.W, s.OW, lo, hi);
        for (index_t r = 0; r < nrows; ++r) {
          const index_t ih = (oh0 + r) * s.SH - s.PH + kh * s.DH;
          const bool inside = ih >= 0 && ih < s.H;
          f(row + r * s.OW, inside ? xc + ih * s.W + off : nullptr, lo, hi);
        }
      }
    }
  }
}

}  // namespace convk

// col (Cg*KH*KW, nrows*OW) <- channels [c0, c0+Cg) of x_img (C,H,W); serial.
template <class T>
void im2col(T* col, const T* x_img, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows) {
  const index_t OW = s.OW, SW = s.SW;
  convk::for_each_tile_row(col, x_img, s, c0, Cg, oh0, nrows, [&](T* dst, const T* src, index_t lo, index_t hi) {
    if (src == nullptr) {
      std::fill(dst, dst + OW, T(0));
      return;
    }
    std::fill(dst, dst + lo, T(0));
    if (SW == 1) {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
    } else {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * SW];
    }
    std::fill(dst + hi, dst + OW, T(0));
  });
}

// channels [c0, c0+Cg) of x_img (C,H,W) += col2im(col (Cg*KH*KW, nrows*OW)); serial.
template <class T>
void col2im(T* x_img, const T* col, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows) {
  const index_t SW = s.SW;
  convk::for_each_tile_row(col, x_img, s, c0, Cg, oh0, nrows, [&](const T* crow, T* dst, index_t lo, index_t hi) {
    if (dst == nullptr) return;
    if (SW == 1) {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow] += crow[ow];
    } else {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow * SW] += crow[ow];
    }
  });
}

namespace convk {

// MB rows of y (M, ldy)[:, :n] = act(w (M,K) @ col (K,n) + b), vectorised over n.
template <class T, int MB>
GK_ALWAYS_INLINE void smallk_forward_rows(T* y, index_t ldy, const T* col, const T* w, const T* b, index_t K, index_t n,
                                          bool relu) {
  using V = cv::Vec<T>;
  constexpr index_t L = cv::kLanes<T>;
  T bias[MB];
  for (int i = 0; i < MB; ++i) bias[i] = b != nullptr ? b[i] : T(0);
  // PV pixel vectors at once: each broadcast weight serves PV FMAs (a load per FMA
  // otherwise); every output is summed in the same order on either loop.
  constexpr int PV = MB > 1 ? 4 : 1;
  index_t p = 0;
  const auto block = [&](auto pv) {
    constexpr int NV = decltype(pv)::value;
    V acc[MB][NV];
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NV; ++j) acc[i][j] = cv::splat<T>(bias[i]);
    for (index_t k = 0; k < K; ++k) {
      V c[NV];
      for (int j = 0; j < NV; ++j) c[j] = cv::load(col + k * n + p + j * L);
      for (int i = 0; i < MB; ++i) {
        const V wk = cv::splat<T>(w[i * K + k]);
        for (int j = 0; j < NV; ++j) acc[i][j] += wk * c[j];
      }
    }
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NV; ++j) {
        if (relu) acc[i][j] = acc[i][j] > V{} ? acc[i][j] : V{};
        cv::store(y + i * ldy + p + j * L, acc[i][j]);
      }
  };
  for (; p + PV * L <= n; p += PV * L) block(std::integral_constant<int, PV>{});
  for (; p + L <= n; p += L) block(std::integral_constant<int, 1>{});
  for (; p < n; ++p) {
    for (int i = 0; i < MB; ++i) {
      T acc = bias[i];
      for (index_t k = 0; k < K; ++k) acc += w[i * K + k] * col[k * n + p];
      if (relu) acc = acc > T(0) ? acc : T(0);
      y[i * ldy + p] = acc;
    }
  }
}

// KB columns of dw (M,K) row m: dw[k] += dy_m . col[k]; db += sum(dy_m) when db is set.
template <class T, int KB>
GK_ALWAYS_INLINE void smallk_dweight_cols(T* dw, T* db, const T* dym, const T* col, index_t n) {
  using V = cv::Vec<T>;
  constexpr index_t L = cv::kLanes<T>;
  V acc[KB > 0 ? KB : 1];
  V accb{};
  for (int j = 0; j < KB; ++j) acc[j] = V{};
  index_t p = 0;
  for (; p + L <= n; p += L) {
    const V d = cv::load(dym + p);
    if (db != nullptr) accb += d;
    for (int j = 0; j < KB; ++j) acc[j] += d * cv::load(col + j * n + p);
  }
  for (int j = 0; j < KB; ++j) {
    T sum = cv::hsum(acc[j]);
    for (index_t q = p; q < n; ++q) sum += dym[q] * col[j * n + q];
    dw[j] += sum;
  }
  if (db != nullptr) {
    T sum = cv::hsum(accb);
    for (index_t q = p; q < n; ++q) sum += dym[q];
    *db += sum;
  }
}

}  // namespace convk

// y (M, ldy)[:, :n] = act(w (M,K) @ col (K,n) + b): direct, vectorised over n, 4 rows at a time.
template <class T>
void smallk_forward(T* y, index_t ldy, const T* col, const T* w, const T* b, index_t M, index_t K, index_t n,
                    bool relu) {
  index_t m = 0;
  for (; m + 4 <= M; m += 4) {
    convk::smallk_forward_rows<T, 4>(y + m * ldy, ldy, col, w + m * K, b ? b + m : nullptr, K, n, relu);
  }
  for (; m < M; ++m) convk::smallk_forward_rows<T, 1>(y + m * ldy, ldy, col, w + m * K, b ? b + m : nullptr, K, n, relu);
}

namespace convk {

// smallk_dweight_cols with KB chosen at run time (1..kMaxKB): one pass over dy per block.
constexpr int kMaxKB = 12;
template <class T, int KB = kMaxKB>
GK_ALWAYS_INLINE void dweight_block(int kb, T* dw, T* db, const T* dym, const T* col, index_t n) {
  if constexpr (KB >= 1) {
    if (kb == KB) {
      smallk_dweight_cols<T, KB>(dw, db, dym, col, n);
    } else {
      dweight_block<T, KB - 1>(kb, dw, db, dym, col, n);
    }
  }
}

}  // namespace convk

// dw (M,K) += dy (M, ldy)[:, :n] @ col (K,n)^T and db (M,) += row sums of dy (db may be null).
// Each row of dy is read once per block of up to 12 taps (once in all for a 3x3 first layer).
template <class T>
void smallk_dweight(T* dw, T* db, const T* dy, index_t ldy, const T* col, index_t M, index_t K, index_t n) {
  const index_t nblocks = ceil_div(K, convk::kMaxKB);
  for (index_t m = 0; m < M; ++m) {
    const T* dym = dy + m * ldy;
    T* dbm = db != nullptr ? db + m : nullptr;
    for (index_t blk = 0, k = 0; blk < nblocks; ++blk, dbm = nullptr) {
      const index_t kb = ceil_div(K - k, nblocks - blk);  // even blocks
      convk::dweight_block<T>(static_cast<int>(kb), dw + m * K + k, dbm, dym, col + k * n, n);
      k += kb;
    }
    if (dbm != nullptr) convk::smallk_dweight_cols<T, 0>(nullptr, dbm, dym, col, n);
  }
}

// db (M,) += row sums of dy (M, ldy)[:, :n].
template <class T>
void row_sum(T* db, const T* dy, index_t ldy, index_t M, index_t n) {
  for (index_t m = 0; m < M; ++m) convk::smallk_dweight_cols<T, 0>(nullptr, db + m, dy + m * ldy, nullptr, n);
}

template <class T>
ConvKernels<T> conv_kernels() {
  return {&im2col<T>,         &col2im<T>,      &smallk_forward<T>,  &smallk_dweight<T>,
          &row_sum<T>,        &wino_input<T>, &wino_output<T>,    &wino_grad_output<T>, &wino_transpose<T>};
}

}  // namespace gk::GK_ISA_NS
