// Conv kernel templates, compiled once per ISA (the includer defines GK_ISA_NS).
// Loops are over one image and one tile of whole output rows; the driver
// (conv.cpp) owns threading and scratch memory.
#pragma once
#include <type_traits>

#include "gradkit/conv.h"
#include "gradkit/simd.h"
#include "winograd_impl.h"

namespace gk::GK_ISA_NS {

namespace convk {

// Output columns ow whose input column ow*SW + off lies in [0, W): [lo, hi).
GK_ALWAYS_INLINE void valid_cols(index_t off, index_t SW, index_t W, index_t OW, index_t& lo, index_t& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, SW);
  hi = W - off <= 0 ? 0 : ceil_div(W - off, SW);
  lo = min(lo, OW);
  hi = max(lo, min(hi, OW));
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

namespace convk {

// The lanes of vector j0 (output columns j0 .. j0 + L - 1) inside [lo, hi): [a, b), empty when b <= a.
GK_ALWAYS_INLINE void lanes_in(index_t j0, index_t L, index_t lo, index_t hi, index_t& a, index_t& b) {
  a = clamp<index_t>(lo - j0, 0, L);
  b = clamp<index_t>(hi - j0, 0, L);
}

}  // namespace convk

// col (Cg*KH*KW, nrows*OW) <- channels [c0, c0+Cg) of x_img (C,H,W); serial.
// Stride 1 copies whole vectors (masked at the padding and the row's end); stride 2 takes the
// even lanes of pairs of vectors.
template <class T>
void im2col(T* col, const T* x_img, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows) {
  constexpr index_t L = simd::kLanes<T>;
  const index_t OW = s.OW, SW = s.SW;
  const T* const x_end = x_img + s.C * s.H * s.W;
  convk::for_each_tile_row(col, x_img, s, c0, Cg, oh0, nrows, [&](T* dst, const T* src, index_t lo, index_t hi) {
    if (src == nullptr) {
      fill(dst, dst + OW, T(0));
    } else if (SW == 1) {
      for (index_t j = 0; j < OW; j += L) {
        index_t a, b;
        convk::lanes_in(j, L, lo, hi, a, b);
        const simd::Vec<T> v = simd::load_lanes(src + j, a, b);
        if (j + L <= OW) {
          simd::store(dst + j, v);
        } else {
          simd::store_partial(dst + j, v, OW - j);
        }
      }
    } else {
      fill(dst, dst + lo, T(0));
      index_t ow = lo;
      if (SW == 2) {
        // the even ones of 2L values (all inside the row: ow + L <= hi), read while the odd one
        // after the last even one is still inside the image
        using VV = winok::VT<T, simd::kVecBytes>;
        for (; ow + VV::L <= hi && src + 2 * (ow + VV::L) <= x_end; ow += VV::L) {
          typename VV::V ev, od;
          VV::deinterleave(src + 2 * ow, ev, od);
          simd::store(dst + ow, ev);
        }
      }
      for (; ow < hi; ++ow) dst[ow] = src[ow * SW];
      fill(dst + hi, dst + OW, T(0));
    }
  });
}

// channels [c0, c0+Cg) of x_img (C,H,W) += col2im(col (Cg*KH*KW, nrows*OW)); serial.
template <class T>
void col2im(T* x_img, const T* col, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows) {
  constexpr index_t L = simd::kLanes<T>;
  const index_t SW = s.SW;
  convk::for_each_tile_row(col, x_img, s, c0, Cg, oh0, nrows, [&](const T* crow, T* dst, index_t lo, index_t hi) {
    if (dst == nullptr) return;
    if (SW == 1) {
      for (index_t j = lo - lo % L; j < hi; j += L) {
        index_t a, b;
        convk::lanes_in(j, L, lo, hi, a, b);
        simd::store_lanes(dst + j, simd::load_lanes(dst + j, a, b) + simd::load_lanes(crow + j, a, b), a, b);
      }
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
  using V = simd::Vec<T>;
  constexpr index_t L = simd::kLanes<T>;
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
      for (int j = 0; j < NV; ++j) acc[i][j] = simd::set1<T>(bias[i]);
    for (index_t k = 0; k < K; ++k) {
      V c[NV];
      for (int j = 0; j < NV; ++j) c[j] = simd::load(col + k * n + p + j * L);
      for (int i = 0; i < MB; ++i) {
        const V wk = simd::set1<T>(w[i * K + k]);
        for (int j = 0; j < NV; ++j) acc[i][j] += wk * c[j];
      }
    }
    for (int i = 0; i < MB; ++i)
      for (int j = 0; j < NV; ++j) {
        if (relu) acc[i][j] = acc[i][j] > V{} ? acc[i][j] : V{};
        simd::store(y + i * ldy + p + j * L, acc[i][j]);
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
  using V = simd::Vec<T>;
  constexpr index_t L = simd::kLanes<T>;
  V acc[KB > 0 ? KB : 1];
  V accb{};
  for (int j = 0; j < KB; ++j) acc[j] = V{};
  index_t p = 0;
  for (; p + L <= n; p += L) {
    const V d = simd::load(dym + p);
    if (db != nullptr) accb += d;
    for (int j = 0; j < KB; ++j) acc[j] += d * simd::load(col + j * n + p);
  }
  for (int j = 0; j < KB; ++j) {
    T sum = simd::hsum(acc[j]);
    for (index_t q = p; q < n; ++q) sum += dym[q] * col[j * n + q];
    dw[j] += sum;
  }
  if (db != nullptr) {
    T sum = simd::hsum(accb);
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

// ---- direct small-K kernels (stride-1 columns, padded image) ----------------------------

// xp <- channels [c0, c0 + Cg) of x_img (C,H,W), zero-padded (direct_pad_layout).
template <class T>
void direct_pad(T* xp, const T* x_img, const ConvShape& s, index_t c0, index_t Cg) {
  constexpr index_t L = simd::kLanes<T>;
  const DirectPad d = direct_pad_layout<IsaTag>(s, sizeof(T));
  T* const end = xp + Cg * d.plane;
  fill(xp, end, T(0));
  for (index_t c = 0; c < Cg; ++c) {
    for (index_t ih = 0; ih < s.H; ++ih) {
      const T* src = x_img + ((c0 + c) * s.H + ih) * s.W;
      T* dst = xp + c * d.plane + (s.PH + ih) * d.ldp + s.PW;
      index_t j = 0;
      for (; j + L <= s.W; j += L) simd::store(dst + j, simd::load(src + j));
      if (j < s.W) {
        // the row's end: zeros past it, a whole vector where it fits the copy (over padding, or
        // over the next rows' elements, written after this)
        const simd::Vec<T> v = simd::load_partial(src + j, s.W - j);
        if (dst + j + L <= end) {
          simd::store(dst + j, v);
        } else {
          simd::store_partial(dst + j, v, s.W - j);
        }
      }
    }
  }
}

namespace convk {

// Offsets in the padded copy of the K taps (c, kh, kw), in weight order.
inline index_t tap_offsets(index_t* off, const ConvShape& s, const DirectPad& d) {
  index_t k = 0;
  for (index_t c = 0; c < s.C / s.G; ++c)
    for (index_t kh = 0; kh < s.KH; ++kh)
      for (index_t kw = 0; kw < s.KW; ++kw) off[k++] = c * d.plane + kh * s.DH * d.ldp + kw * s.DW;
  return k;
}

// MB channels x RB output rows x NV vectors of y = act(b + sum over taps k of w[., k] * x[off[k]]).
// y: channel m0, first row and column (channel stride P, row stride OW); x: the matching
// padded input (row stride xrow). Vector v starts at column v * L, the last one `back` columns
// earlier (it ends at the row's end, overlapping its neighbour: recomputed lanes get the same
// bits) and keeps `last` lanes (L but for rows shorter than a vector): whole-vector stores,
// since AVX2's masked stores are slow on AMD cores. Taps summed in order.
template <class T, int MB, int RB, int NV>
GK_ALWAYS_INLINE void direct_forward_tile(T* y, index_t P, index_t OW, const T* x, index_t xrow, const index_t* off,
                                          index_t K, const T* w, const T* b, index_t last, index_t back, bool relu) {
  using V = simd::Vec<T>;
  constexpr index_t L = simd::kLanes<T>;
  const auto col = [&](int v) { return v * L - (v == NV - 1 ? back : 0); };
  V acc[MB][RB][NV];
  for (int i = 0; i < MB; ++i) {
    const V bi = simd::set1<T>(b != nullptr ? b[i] : T(0));
    for (int r = 0; r < RB; ++r)
      for (int v = 0; v < NV; ++v) acc[i][r][v] = bi;
  }
  for (index_t k = 0; k < K; ++k) {
    V xv[RB][NV];
    for (int r = 0; r < RB; ++r)
      for (int v = 0; v < NV; ++v) xv[r][v] = simd::load(x + r * xrow + off[k] + col(v));
    for (int i = 0; i < MB; ++i) {
      const V wk = simd::set1<T>(w[i * K + k]);
      for (int r = 0; r < RB; ++r)
        for (int v = 0; v < NV; ++v) acc[i][r][v] += wk * xv[r][v];
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int r = 0; r < RB; ++r)
      for (int v = 0; v < NV; ++v) {
        V a = acc[i][r][v];
        if (relu) a = a > V{} ? a : V{};
        T* p = y + i * P + r * OW + col(v);
        if (v == NV - 1 && last < L) {
          simd::store_partial(p, a, last);
        } else {
          simd::store(p, a);
        }
      }
}

// MB channels of the forward: row pairs, then two vectors of a row at a time.
template <class T, int MB>
GK_ALWAYS_INLINE void direct_forward_channels(T* y, const T* xp, const index_t* off, const T* w, const T* b,
                                              const ConvShape& s, index_t K, index_t xrow, bool relu) {
  constexpr index_t L = simd::kLanes<T>;
  const index_t P = s.OH * s.OW, nv = ceil_div(s.OW, L);
  // rows of at least a vector: the last vector moved back to end at the row's end; shorter: masked
  const index_t last = s.OW >= L ? L : s.OW, back = s.OW >= L ? nv * L - s.OW : 0;
  const auto rows = [&](auto rb, index_t oh) {
    constexpr int RB = decltype(rb)::value;
    T* yr = y + oh * s.OW;
    const T* xr = xp + oh * xrow;
    index_t v = 0;
    for (; v + 2 <= nv; v += 2) {
      direct_forward_tile<T, MB, RB, 2>(yr + v * L, P, s.OW, xr + v * L, xrow, off, K, w, b, last,
                                        v + 2 == nv ? back : 0, relu);
    }
    if (v < nv) direct_forward_tile<T, MB, RB, 1>(yr + v * L, P, s.OW, xr + v * L, xrow, off, K, w, b, last, back, relu);
  };
  index_t oh = 0;
  for (; oh + 2 <= s.OH; oh += 2) rows(std::integral_constant<int, 2>{}, oh);
  if (oh < s.OH) rows(std::integral_constant<int, 1>{}, oh);
}

// Channels per forward tile: 16 accumulators with 32 registers, 8 with 16.
constexpr int kDirectMB = simd::kVecBytes == 64 ? 4 : 2;

}  // namespace convk

// y (M, OH*OW) = act(w (M,K) * taps of xp + b) for one image and group.
template <class T>
void direct_forward(T* y, const T* xp, const T* w, const T* b, const ConvShape& s, index_t M, bool relu) {
  constexpr int MB = convk::kDirectMB;
  const DirectPad d = direct_pad_layout<IsaTag>(s, sizeof(T));
  index_t off[kConvSmallK];
  const index_t K = convk::tap_offsets(off, s, d), P = s.OH * s.OW, xrow = s.SH * d.ldp;
  index_t m = 0;
  for (; m + MB <= M; m += MB) {
    convk::direct_forward_channels<T, MB>(y + m * P, xp, off, w + m * K, b ? b + m : nullptr, s, K, xrow, relu);
  }
  for (; m < M; ++m) {
    convk::direct_forward_channels<T, 1>(y + m * P, xp, off, w + m * K, b ? b + m : nullptr, s, K, xrow, relu);
  }
}

namespace convk {

// acc[i][t] += dy_i * tap t, acc[i][K] += dy_i (when with_db), lane-wise over all pixels, for
// MB channels and KB taps; acc rows of K + 1 vectors, kept in registers over the image.
template <class T, int MB, int KB>
GK_ALWAYS_INLINE void direct_dweight_tile(T* acc, index_t K, const T* dy, const T* xp, const index_t* off,
                                          const ConvShape& s, index_t xrow, bool with_db) {
  using V = simd::Vec<T>;
  constexpr index_t L = simd::kLanes<T>;
  const index_t P = s.OH * s.OW;
  V a[MB][KB], ab[MB];
  for (int i = 0; i < MB; ++i) {
    for (int t = 0; t < KB; ++t) a[i][t] = simd::load(acc + (i * (K + 1) + t) * L);
    ab[i] = with_db ? simd::load(acc + (i * (K + 1) + K) * L) : V{};
  }
  // One vector at column j of each row, lanes where `keep` holds (the others count as 0).
  const auto add = [&](const T* dr, const T* xr, auto keep) {
    V d[MB];
    for (int i = 0; i < MB; ++i) {
      d[i] = keep(dr + i * P);
      ab[i] += d[i];
    }
    for (int t = 0; t < KB; ++t) {
      const V xv = keep(xr + off[t]);
      for (int i = 0; i < MB; ++i) a[i][t] += d[i] * xv;
    }
  };
  const auto whole = [](const T* p) { return simd::load(p); };
  if (s.OW < L) {  // rows shorter than a vector: masked loads, nothing read beyond the row
    const auto first = [&](const T* p) { return simd::load_partial(p, s.OW); };
    for (index_t oh = 0; oh < s.OH; ++oh) add(dy + oh * s.OW, xp + oh * xrow, first);
  } else {
    // Whole vectors (AVX2's masked loads are slow on AMD cores); the last one ends at the row's
    // end and keeps only the lanes of columns no other vector covered.
    const index_t nv = ceil_div(s.OW, L), jl = s.OW - L;
    const simd::Mask<T> fresh = simd::iota<T>() >= static_cast<simd::elem_t<simd::Mask<T>>>(nv * L - s.OW);
    const auto tail = [&](const T* p) { return fresh ? simd::load(p) : V{}; };
    for (index_t oh = 0; oh < s.OH; ++oh) {
      const T* dr = dy + oh * s.OW;
      const T* xr = xp + oh * xrow;
      for (index_t j = 0; j + L < s.OW; j += L) add(dr + j, xr + j, whole);
      add(dr + jl, xr + jl, tail);
    }
  }
  for (int i = 0; i < MB; ++i) {
    for (int t = 0; t < KB; ++t) simd::store(acc + (i * (K + 1) + t) * L, a[i][t]);
    if (with_db) simd::store(acc + (i * (K + 1) + K) * L, ab[i]);
  }
}

// direct_dweight_tile with KB chosen at run time (1..kMaxKB).
template <class T, int MB, int KB = kMaxKB>
GK_ALWAYS_INLINE void direct_dweight_block(int kb, T* acc, index_t K, const T* dy, const T* xp, const index_t* off,
                                           const ConvShape& s, index_t xrow, bool with_db) {
  if constexpr (KB >= 1) {
    if (kb == KB) {
      direct_dweight_tile<T, MB, KB>(acc, K, dy, xp, off, s, xrow, with_db);
    } else {
      direct_dweight_block<T, MB, KB - 1>(kb, acc, K, dy, xp, off, s, xrow, with_db);
    }
  }
}

// Channels per dW tile: 3 x 9 accumulators fit 32 registers, 12 fit 16.
constexpr int kDirectDwMB = simd::kVecBytes == 64 ? 3 : 1;
// Taps per dW tile of MB channels: MB * KB accumulators, MB for db and MB + 1 loads in
// the registers (3 x 9 or 2 x 12 with 32).
constexpr index_t dw_max_kb(int MB) { return MB >= 3 ? 9 : kMaxKB; }

}  // namespace convk

// acc (M, K+1) vectors += lane-wise dy (M, OH*OW) times each tap of xp; column K += dy
// when with_db. Each channel block reads its dy rows once per block of up to 9 or 12 taps.
template <class T>
void direct_dweight(T* acc, const T* dy, const T* xp, const ConvShape& s, index_t M, bool with_db) {
  constexpr int MB = convk::kDirectDwMB;
  constexpr index_t L = simd::kLanes<T>;
  const DirectPad d = direct_pad_layout<IsaTag>(s, sizeof(T));
  index_t off[kConvSmallK];
  const index_t K = convk::tap_offsets(off, s, d), P = s.OH * s.OW, xrow = s.SH * d.ldp;
  const auto channels = [&](auto mb, index_t m) {
    constexpr int MBc = decltype(mb)::value;
    const index_t nblocks = ceil_div(K, convk::dw_max_kb(MBc));
    for (index_t blk = 0, k = 0; blk < nblocks; ++blk) {
      const index_t kb = ceil_div(K - k, nblocks - blk);  // even blocks; db rides on the first
      convk::direct_dweight_block<T, MBc>(static_cast<int>(kb), acc + (m * (K + 1) + k) * L, K, dy + m * P, xp,
                                          off + k, s, xrow, with_db && blk == 0);
      k += kb;
    }
  };
  index_t m = 0;
  for (; m + MB <= M; m += MB) channels(std::integral_constant<int, MB>{}, m);
  if constexpr (MB > 2) {
    for (; m + 2 <= M; m += 2) channels(std::integral_constant<int, 2>{}, m);
  }
  for (; m < M; ++m) channels(std::integral_constant<int, 1>{}, m);
}

// dw (M,K) += lane sums of acc[:, :K]; db (M,) += lane sums of acc[:, K] (each skipped when null).
template <class T>
void direct_finish(T* dw, T* db, const T* acc, index_t M, index_t K) {
  constexpr index_t L = simd::kLanes<T>;
  for (index_t m = 0; m < M; ++m) {
    for (index_t k = 0; dw != nullptr && k < K; ++k) dw[m * K + k] += simd::hsum(simd::load(acc + (m * (K + 1) + k) * L));
    if (db != nullptr) db[m] += simd::hsum(simd::load(acc + (m * (K + 1) + K) * L));
  }
}

// db (M,) += row sums of dy (M, ldy)[:, :n].
template <class T>
void row_sum(T* db, const T* dy, index_t ldy, index_t M, index_t n) {
  for (index_t m = 0; m < M; ++m) convk::smallk_dweight_cols<T, 0>(nullptr, db + m, dy + m * ldy, nullptr, n);
}

template <class T>
constexpr ConvKernels<T> conv_kernels() {
  return {&im2col<T>,         &col2im<T>,      &smallk_forward<T>,  &smallk_dweight<T>,
          &direct_pad<T>,     &direct_forward<T>, &direct_dweight<T>, &direct_finish<T>,
          &row_sum<T>,        &wino_input<T>, &wino_output<T>,    &wino_grad_output<T>, &wino4_input<T>,
          &wino4_output<T>,   &wino4_grad_output<T>, &wino_transpose<T>};
}

}  // namespace gk::GK_ISA_NS
