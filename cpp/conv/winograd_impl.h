// Winograd F(2x2, 3x3) transforms (Lavin & Gray 2016), compiled once per ISA.
//
// A block is a range of tile rows r in [r0, r0 + nr) over the whole batch (image
// r / TH, tile row r % TH); tile t of the block is (r - r0) * TW + tw. Transformed
// data is stored as 16 planes (xi = 4a + k) of (channels, tiles): row c of plane xi starts
// at xi * ps + c * ld (the driver interleaves the planes: ps = row width, ld = 16 * ps, so
// that the 16 stores of a vector of tiles land close together), one GEMM operand per plane.
// Loops run over the tiles of one tile row, vectorised over tiles: input rows are
// loaded as vectors and split into even and odd columns. Narrow images (a tile row
// of at most half a native vector) use half-width vectors, so that fewer lanes idle.
// The last vector of a tile row is whole: its stores spill into the next tile rows'
// slots (written later: rows are visited in order, channel by channel), never past the
// block's last tile (masked stores). Loads past a row only feed lanes that
// are dropped. Outputs to y are stored with masked tails (nothing past a row).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gradkit/conv.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS {

namespace winok {

// Vectors of B bytes of T (B = the native width, or half or a quarter of it) and the
// SIMD layer's operations at that width.
template <class T, int B>
struct VT {
  using V = simd::Vec<T, B>;
  using I = simd::Mask<T, B>;
  using IE = simd::elem_t<I>;
  static constexpr index_t L = simd::lanes_of<V>;

  static GK_ALWAYS_INLINE V load(const T* p) { return simd::load<T, B>(p); }
  // p[0 .. n) = v[0 .. n), 0 <= n <= L; nothing else is written.
  static GK_ALWAYS_INLINE void store_n(T* p, V v, index_t n) {
    if (n >= L) simd::store(p, v);
    else simd::store_partial(p, v, n);
  }
  // ev = (p0, p2, ...), od = (p1, p3, ...) of the 2L values at p.
  static GK_ALWAYS_INLINE void deinterleave(const T* p, V& ev, V& od) {
    simd::deinterleave(load(p), load(p + L), ev, od);
  }
  // p[0 .. n) = the first n of (e0, o0, e1, o1, ...), n <= 2L.
  static GK_ALWAYS_INLINE void interleave_n(T* p, V e, V o, index_t n) {
    V lo, hi;
    simd::interleave(e, o, lo, hi);
    store_n(p, lo, n);
    if (n > L) store_n(p + L, hi, n - L);
  }
  // p[0 .. n) = the first n of (a0, b0, c0, d0, a1, b1, ...), n <= 4L.
  static GK_ALWAYS_INLINE void interleave4_n(T* p, V a, V b, V c, V d, index_t n) {
    V ac_lo, ac_hi, bd_lo, bd_hi, r0, r1;
    simd::interleave(a, c, ac_lo, ac_hi);  // a0 c0 a1 c1 ...
    simd::interleave(b, d, bd_lo, bd_hi);  // b0 d0 b1 d1 ...
    simd::interleave(ac_lo, bd_lo, r0, r1);
    store_n(p, r0, n);
    if (n > L) store_n(p + L, r1, n - L);
    if (n > 2 * L) {
      simd::interleave(ac_hi, bd_hi, r0, r1);
      store_n(p + 2 * L, r0, n - 2 * L);
      if (n > 3 * L) store_n(p + 3 * L, r1, n - 3 * L);
    }
  }
};

// Which lanes of load_pairs at column col0 fall inside [0, W): ev for the even columns
// col0 + 2l, od for the odd ones; inside when all do. The same for every row and channel.
template <class VV>
struct PairMask {
  typename VV::I ev, od;
  bool inside;
};

template <class VV>
GK_ALWAYS_INLINE PairMask<VV> pair_mask(index_t col0, index_t W) {
  using I_ = typename VV::I;
  using IE = typename VV::IE;
  I_ twice;  // 0, 2, 4, ... (a constant)
  for (index_t l = 0; l < VV::L; ++l) twice[l] = static_cast<IE>(2 * l);
  const I_ zero{}, width = zero + static_cast<IE>(W);
  const I_ ce = twice + static_cast<IE>(col0), co = ce + 1;
  return {(ce >= zero) & (ce < width), (co >= zero) & (co < width), col0 >= 0 && col0 + 2 * VV::L <= W};
}

// ev[l] = row[col0 + 2l], od[l] = row[col0 + 2l + 1], zero where the column is outside
// [0, W) (mask = pair_mask(col0, W)) or row is null. Straight from memory (no staging
// buffer: a vector load of freshly stored scalars stalls on store forwarding); [lo, hi)
// is memory that may be read.
template <class T, class VV>
GK_ALWAYS_INLINE void load_pairs(const T* row, index_t col0, index_t W, const PairMask<VV>& mask, const T* lo,
                                 const T* hi, typename VV::V& ev, typename VV::V& od) {
  using V_ = typename VV::V;
  constexpr index_t L = VV::L;
  if (row == nullptr) {
    ev = od = V_{};
    return;
  }
  const T* p = row + col0;
  if (mask.inside) {
    VV::deinterleave(p, ev, od);
    return;
  }
  if (p >= lo && p + 2 * L <= hi) {  // readable: zero the columns outside the row
    VV::deinterleave(p, ev, od);
    ev = mask.ev ? ev : V_{};
    od = mask.od ? od : V_{};
    return;
  }
  for (index_t l = 0; l < L; ++l) {  // at the ends of the tensor: element by element
    const index_t c = col0 + 2 * l;
    ev[l] = c >= 0 && c < W ? row[c] : T(0);
    od[l] = c + 1 >= 0 && c + 1 < W ? row[c + 1] : T(0);
  }
}

// Prefetches the n values at p (reads or, with Write, writes): a channel ahead of the
// transforms, whose rows are short runs of a large tensor that the hardware picks up late.
template <bool Write, class T>
GK_ALWAYS_INLINE void prefetch_run(const T* p, index_t n) {
  const char* b = reinterpret_cast<const char*>(p);
  for (index_t k = 0; k < n * static_cast<index_t>(sizeof(T)); k += 64) __builtin_prefetch(b + k, Write ? 1 : 0, 3);
  __builtin_prefetch(b + n * static_cast<index_t>(sizeof(T)) - 1, Write ? 1 : 0, 3);
}

// rows[i] = row st * (r % TH) - ph + i of channel c of image r / TH of x (N, C, H, W), null
// outside [0, H), for the NR rows a tile row r reads; prefetches the same rows of the next
// channel. Returns the end of the image (memory up to there may be read).
template <int NR, class T>
GK_ALWAYS_INLINE const T* tile_rows(const T* (&rows)[NR], const T* x, index_t c, index_t C, index_t H, index_t W,
                                    index_t r, index_t TH, index_t st, index_t ph) {
  const index_t n = r / TH, th = r % TH;
  const T* xc = x + (n * C + c) * H * W;
  for (int i = 0; i < NR; ++i) {
    const index_t ih = st * th - ph + i;
    rows[i] = ih >= 0 && ih < H ? xc + ih * W : nullptr;
  }
  if (c + 1 < C) {
    for (int i = 0; i < NR; ++i) {
      if (rows[i] != nullptr) prefetch_run<false>(rows[i] + H * W, W);
    }
  }
  return x + (n + 1) * C * H * W;
}

// The loops shared by the transforms that read tiles of a tensor (input (N, C, H, W) ->
// planes): for channel c, tile row r of the block and vector j of its tiles,
// f(rows, end, out + j, j, n_st) with the NR rows the tile row reads (tile_rows, rows
// st * th - ph + i), the output row of the block's planes at out, and n_st the tiles that
// may be stored from j (no spill past the block's last tile).
template <int NR, index_t L, class T, class F>
GK_ALWAYS_INLINE void for_tile_vectors(T* planes, const T* x, index_t C, index_t H, index_t W, index_t TH,
                                       index_t TW, index_t r0, index_t nr, index_t ld, index_t st, index_t ph, F&& f) {
  for (index_t c = 0; c < C; ++c) {
    for (index_t r = r0; r < r0 + nr; ++r) {
      const T* rows[NR];
      const T* end = tile_rows(rows, x, c, C, H, W, r, TH, st, ph);
      T* out = planes + c * ld + (r - r0) * TW;
      for (index_t j = 0; j < TW; j += L) f(rows, end, out + j, j, min(L, nr * TW - (r - r0) * TW - j));
    }
  }
}

template <class T, int B>
void input(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH, index_t TW,
           index_t r0, index_t nr, index_t ld, index_t ps) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  for_tile_vectors<4, VV::L>(V, x, C, H, W, TH, TW, r0, nr, ld, 2, ph,
                             [&](const T* const* rows, const T* end, T* out, index_t j, index_t n_st) {
    const PairMask<VV> ma = pair_mask<VV>(2 * j - pw, W), mb = pair_mask<VV>(2 * j + 2 - pw, W);
    V_ q[4][4];  // d B, row by row
    for (int i = 0; i < 4; ++i) {
      V_ d0, d1, d2, d3;
      load_pairs<T, VV>(rows[i], 2 * j - pw, W, ma, x, end, d0, d1);
      load_pairs<T, VV>(rows[i], 2 * j + 2 - pw, W, mb, x, end, d2, d3);
      q[i][0] = d0 - d2;
      q[i][1] = d1 + d2;
      q[i][2] = d2 - d1;
      q[i][3] = d1 - d3;
    }
    for (int k = 0; k < 4; ++k) {
      VV::store_n(out + (0 * 4 + k) * ps, q[0][k] - q[2][k], n_st);
      VV::store_n(out + (1 * 4 + k) * ps, q[1][k] + q[2][k], n_st);
      VV::store_n(out + (2 * 4 + k) * ps, q[2][k] - q[1][k], n_st);
      VV::store_n(out + (3 * 4 + k) * ps, q[1][k] - q[3][k], n_st);
    }
  });
}

template <class T, int B>
void output(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0, index_t nr,
            index_t ld, index_t ps, const T* bias, bool relu) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  constexpr index_t L = VV::L;
  for (index_t c = 0; c < C; ++c) {  // M read in order, each plane row once
    const V_ b = V_{} + (bias != nullptr ? bias[c] : T(0));
    for (index_t r = r0; r < r0 + nr; ++r) {
      const index_t n = r / TH, th = r % TH;
      const bool two = 2 * th + 1 < OH;
      const T* m = M + c * ld + (r - r0) * TW;
      T* y0 = y + (n * C + c) * OH * OW + 2 * th * OW;
      if (c + 1 < C) prefetch_run<true>(y0 + OH * OW, two ? 2 * OW : OW);
      for (index_t j = 0; j < TW; j += L) {
        const T* src = m + j;
        V_ s[4][2];  // (row a of m) A
        for (int a = 0; a < 4; ++a) {
          const V_ m0 = VV::load(src + (4 * a) * ps), m1 = VV::load(src + (4 * a + 1) * ps);
          const V_ m2 = VV::load(src + (4 * a + 2) * ps), m3 = VV::load(src + (4 * a + 3) * ps);
          s[a][0] = m0 + m1 + m2;
          s[a][1] = m1 - m2 - m3;
        }
        V_ v[2][2];
        for (int k = 0; k < 2; ++k) {
          v[0][k] = s[0][k] + s[1][k] + s[2][k] + b;
          v[1][k] = s[1][k] - s[2][k] - s[3][k] + b;
          if (relu) {
            v[0][k] = v[0][k] > V_{} ? v[0][k] : V_{};
            v[1][k] = v[1][k] > V_{} ? v[1][k] : V_{};
          }
        }
        const index_t w = min(2 * L, OW - 2 * j);
        VV::interleave_n(y0 + 2 * j, v[0][0], v[0][1], w);
        if (two) VV::interleave_n(y0 + OW + 2 * j, v[1][0], v[1][1], w);
      }
    }
  }
}

template <class T, int B>
void grad_output(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                 index_t nr, index_t ld, index_t ps) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  for_tile_vectors<2, VV::L>(dM, dy, C, OH, OW, TH, TW, r0, nr, ld, 2, 0,
                             [&](const T* const* rows, const T* end, T* out, index_t j, index_t n_st) {
    const PairMask<VV> mg = pair_mask<VV>(2 * j, OW);
    V_ q[2][4];  // (row i of dy) A^T
    for (int i = 0; i < 2; ++i) {
      V_ g0, g1;
      load_pairs<T, VV>(rows[i], 2 * j, OW, mg, dy, end, g0, g1);
      q[i][0] = g0;
      q[i][1] = g0 + g1;
      q[i][2] = g0 - g1;
      q[i][3] = -g1;
    }
    for (int k = 0; k < 4; ++k) {
      VV::store_n(out + (0 * 4 + k) * ps, q[0][k], n_st);
      VV::store_n(out + (1 * 4 + k) * ps, q[0][k] + q[1][k], n_st);
      VV::store_n(out + (2 * 4 + k) * ps, q[0][k] - q[1][k], n_st);
      VV::store_n(out + (3 * 4 + k) * ps, -q[1][k], n_st);
    }
  });
}

// ---- F(4x4, 3x3): 6x6 input tiles at a stride of 4, 36 planes (xi = 6a + k) ------------

// Which lanes of load_sixes at column col0 fall inside [0, W): m[e] for the columns
// col0 + 4l + e; inside when all do. The same for every row and channel.
template <class VV>
struct SixMask {
  typename VV::I m[6];
  bool inside;
};

template <class VV>
GK_ALWAYS_INLINE SixMask<VV> six_mask(index_t col0, index_t W) {
  using I_ = typename VV::I;
  using IE = typename VV::IE;
  I_ four;  // 0, 4, 8, ... (a constant)
  for (index_t l = 0; l < VV::L; ++l) four[l] = static_cast<IE>(4 * l);
  const I_ zero{}, width = zero + static_cast<IE>(W);
  SixMask<VV> r;
  for (int e = 0; e < 6; ++e) {
    const I_ c = four + static_cast<IE>(col0 + e);
    r.m[e] = (c >= zero) & (c < width);
  }
  r.inside = col0 >= 0 && col0 + 4 * VV::L + 2 <= W;
  return r;
}

// d[e][l] = row[col0 + 4l + e] for e < 6 (e = 4, 5 are the next tile's 0, 1), zero where the
// column is outside [0, W) (mask = six_mask(col0, W)) or row is null; [lo, hi) may be read.
template <class T, class VV>
GK_ALWAYS_INLINE void load_sixes(const T* row, index_t col0, index_t W, const SixMask<VV>& mask, const T* lo,
                                 const T* hi, typename VV::V (&d)[6]) {
  using V_ = typename VV::V;
  using I_ = typename VV::I;
  using IE = typename VV::IE;
  constexpr index_t L = VV::L;
  if (row == nullptr) {
    for (int e = 0; e < 6; ++e) d[e] = V_{};
    return;
  }
  const T* p = row + col0;
  if (p >= lo && p + 4 * L + 2 <= hi) {
    I_ ev, od, next;  // simd::deinterleave's shuffles, written out: one set of constants for all four
    for (index_t j = 0; j < L; ++j) {
      ev[j] = static_cast<IE>(2 * j);
      od[j] = static_cast<IE>(2 * j + 1);
      next[j] = static_cast<IE>(j + 1);
    }
    const V_ a = VV::load(p), b = VV::load(p + L), c = VV::load(p + 2 * L), e = VV::load(p + 3 * L);
    const V_ e01 = __builtin_shuffle(a, b, ev), o01 = __builtin_shuffle(a, b, od);  // p[2i], p[2i + 1]
    const V_ e23 = __builtin_shuffle(c, e, ev), o23 = __builtin_shuffle(c, e, od);
    d[0] = __builtin_shuffle(e01, e23, ev);
    d[1] = __builtin_shuffle(o01, o23, ev);
    d[2] = __builtin_shuffle(e01, e23, od);
    d[3] = __builtin_shuffle(o01, o23, od);
    d[4] = __builtin_shuffle(d[0], p[4 * L] - V_{}, next);  // lanes moved down, the next value in
    d[5] = __builtin_shuffle(d[1], p[4 * L + 1] - V_{}, next);
    if (!mask.inside) {
      for (int k = 0; k < 6; ++k) d[k] = mask.m[k] ? d[k] : V_{};
    }
    return;
  }
  for (index_t l = 0; l < L; ++l) {  // at the ends of the tensor: element by element
    for (int e = 0; e < 6; ++e) {
      const index_t c = col0 + 4 * l + e;
      d[e][l] = c >= 0 && c < W ? row[c] : T(0);
    }
  }
}

// k = d B of one row of six vectors (B^T of F(4x4, 3x3), Lavin & Gray).
template <class T, class V_>
GK_ALWAYS_INLINE void bt6(const V_ (&d)[6], V_ (&k)[6]) {
  const V_ t1 = d[4] - T(4) * d[2], t2 = d[3] - T(4) * d[1];
  const V_ t3 = d[4] - d[2], t4 = T(2) * (d[3] - d[1]);
  k[0] = (T(4) * d[0] - T(5) * d[2]) + d[4];
  k[1] = t1 + t2;
  k[2] = t1 - t2;
  k[3] = t3 + t4;
  k[4] = t3 - t4;
  k[5] = (T(4) * d[1] - T(5) * d[3]) + d[5];
}

// s = m A of one row of six vectors (A^T of F(4x4, 3x3)).
template <class T, class V_>
GK_ALWAYS_INLINE void at6(const V_ (&m)[6], V_ (&s)[4]) {
  const V_ u = m[1] + m[2], v = m[1] - m[2], p = m[3] + m[4], q = m[3] - m[4];
  s[0] = (m[0] + u) + p;
  s[1] = v + T(2) * q;
  s[2] = u + T(4) * p;
  s[3] = (v + T(8) * q) + m[5];
}

template <class T, int B>
void input4(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH, index_t TW,
            index_t r0, index_t nr, index_t ld, index_t ps) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  for_tile_vectors<6, VV::L>(V, x, C, H, W, TH, TW, r0, nr, ld, 4, ph,
                             [&](const T* const* rows, const T* end, T* out, index_t j, index_t n_st) {
    const SixMask<VV> ms = six_mask<VV>(4 * j - pw, W);
    V_ q[6][6];  // d B, row by row
    for (int i = 0; i < 6; ++i) {
      V_ d[6];
      load_sixes<T, VV>(rows[i], 4 * j - pw, W, ms, x, end, d);
      bt6<T>(d, q[i]);
    }
    for (int k = 0; k < 6; ++k) {
      const V_ col[6] = {q[0][k], q[1][k], q[2][k], q[3][k], q[4][k], q[5][k]};
      V_ o[6];
      bt6<T>(col, o);
      for (int a = 0; a < 6; ++a) VV::store_n(out + (6 * a + k) * ps, o[a], n_st);
    }
  });
}

template <class T, int B>
void output4(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0, index_t nr,
             index_t ld, index_t ps, const T* bias, bool relu) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  constexpr index_t L = VV::L;
  for (index_t c = 0; c < C; ++c) {  // M read in order, each plane row once
    const V_ b = (bias != nullptr ? bias[c] : T(0)) - V_{};
    for (index_t r = r0; r < r0 + nr; ++r) {
      const index_t n = r / TH, th = r % TH;
      const index_t rows = min<index_t>(4, OH - 4 * th);
      const T* m = M + c * ld + (r - r0) * TW;
      T* y0 = y + (n * C + c) * OH * OW + 4 * th * OW;
      if (c + 1 < C) prefetch_run<true>(y0 + OH * OW, rows * OW);
      for (index_t j = 0; j < TW; j += L) {
        V_ s[6][4];  // (row a of m) A
        for (int a = 0; a < 6; ++a) {
          V_ mm[6];
          for (int k = 0; k < 6; ++k) mm[k] = VV::load(m + (6 * a + k) * ps + j);
          at6<T>(mm, s[a]);
        }
        V_ v[4][4];
        for (int k = 0; k < 4; ++k) {
          const V_ col[6] = {s[0][k], s[1][k], s[2][k], s[3][k], s[4][k], s[5][k]};
          V_ o[4];
          at6<T>(col, o);
          for (int i = 0; i < 4; ++i) {
            v[i][k] = o[i] + b;
            if (relu) v[i][k] = v[i][k] > V_{} ? v[i][k] : V_{};
          }
        }
        const index_t w = min(4 * L, OW - 4 * j);
        for (index_t i = 0; i < rows; ++i) VV::interleave4_n(y0 + i * OW + 4 * j, v[i][0], v[i][1], v[i][2], v[i][3], w);
      }
    }
  }
}

// k = g A^T of one row of four vectors (A of F(4x4, 3x3): the output gradient's transform).
template <class T, class V_>
GK_ALWAYS_INLINE void a6(const V_ (&g)[4], V_ (&k)[6]) {
  const V_ e = g[0] + g[2], o = g[1] + g[3];
  const V_ e4 = g[0] + T(4) * g[2], o8 = T(2) * g[1] + T(8) * g[3];
  k[0] = g[0];
  k[1] = e + o;
  k[2] = e - o;
  k[3] = e4 + o8;
  k[4] = e4 - o8;
  k[5] = g[3];
}

template <class T, int B>
void grad_output4(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                  index_t nr, index_t ld, index_t ps) {
  using VV = VT<T, B>;
  using V_ = typename VV::V;
  for_tile_vectors<4, VV::L>(dM, dy, C, OH, OW, TH, TW, r0, nr, ld, 4, 0,
                             [&](const T* const* rows, const T* end, T* out, index_t j, index_t n_st) {
    const SixMask<VV> ms = six_mask<VV>(4 * j, OW);
    V_ q[4][6];  // (row i of dy) A^T
    for (int i = 0; i < 4; ++i) {
      V_ d[6];
      load_sixes<T, VV>(rows[i], 4 * j, OW, ms, dy, end, d);
      const V_ g[4] = {d[0], d[1], d[2], d[3]};
      a6<T>(g, q[i]);
    }
    for (int k = 0; k < 6; ++k) {
      const V_ col[4] = {q[0][k], q[1][k], q[2][k], q[3][k]};
      V_ o[6];
      a6<T>(col, o);
      for (int a = 0; a < 6; ++a) VV::store_n(out + (6 * a + k) * ps, o[a], n_st);
    }
  });
}

// f(std::integral_constant<int, B>) for F(4x4, 3x3): the native width halved (down to 16
// bytes) while a tile row fills at most half a vector.
template <class T, class F>
GK_ALWAYS_INLINE void with_width4(index_t TW, F&& f) {
  constexpr int B = simd::kVecBytes;
  constexpr index_t L = simd::kLanes<T>;
  if constexpr (B >= 64) {
    if (TW <= L / 4) return f(std::integral_constant<int, B / 4>{});
  }
  if constexpr (B >= 32) {
    if (TW <= L / 2) return f(std::integral_constant<int, B / 2>{});
  }
  f(std::integral_constant<int, B>{});
}

// Swaps the off-diagonal b x b blocks of every 2b x 2b block of the L x L matrix in rows
// v[0 .. L), for b = B, B/2, ..., 1: afterwards v holds the transpose.
template <class VV, index_t B>
GK_ALWAYS_INLINE void transpose_stages(typename VV::V* v) {
  if constexpr (B >= 1) {
    using I_ = typename VV::I;
    using IE = typename VV::IE;
    constexpr index_t L = VV::L;
    I_ lo, hi;
    for (index_t k = 0; k < L; ++k) {
      lo[k] = static_cast<IE>((k & B) == 0 ? k : L + k - B);
      hi[k] = static_cast<IE>((k & B) == 0 ? k + B : L + k);
    }
    for (index_t i = 0; i < L; ++i) {
      if ((i & B) != 0) continue;
      const typename VV::V a = v[i], c = v[i + B];
      v[i] = __builtin_shuffle(a, c, lo);
      v[i + B] = __builtin_shuffle(a, c, hi);
    }
    transpose_stages<VV, B / 2>(v);
  }
}

// f(std::integral_constant<int, B>) with B the vector width in bytes for tile rows of TW:
// half the native width when a tile row fills at most half a native vector (fewer idle lanes).
template <class T, class F>
GK_ALWAYS_INLINE void with_width(index_t TW, F&& f) {
  constexpr int B = simd::kVecBytes;
  if (B >= 32 && TW <= simd::kLanes<T> / 2) {
    f(std::integral_constant<int, B / 2>{});
  } else {
    f(std::integral_constant<int, B>{});
  }
}

}  // namespace winok

// V (16 planes of (C, nr*TW)) = B^T d B of the 4x4 input tiles of x (N, C, H, W), zero-padded by (ph, pw).
template <class T>
void wino_input(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH, index_t TW,
                index_t r0, index_t nr, index_t ld, index_t ps) {
  winok::with_width<T>(TW, [&](auto b) { winok::input<T, b.value>(V, x, C, H, W, ph, pw, TH, TW, r0, nr, ld, ps); });
}

// y (N, C, OH, OW) tiles of the block = act(A^T m A + bias) from M (16 planes of (C, nr*TW)).
template <class T>
void wino_output(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0, index_t nr,
                 index_t ld, index_t ps, const T* bias, bool relu) {
  winok::with_width<T>(TW,
                       [&](auto b) { winok::output<T, b.value>(y, M, C, OH, OW, TH, TW, r0, nr, ld, ps, bias, relu); });
}

// dM (16 planes of (C, nr*TW)) = A dy A^T of the 2x2 output-gradient tiles of dy (N, C, OH, OW) (zeros past the edge).
template <class T>
void wino_grad_output(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                      index_t nr, index_t ld, index_t ps) {
  winok::with_width<T>(TW, [&](auto b) { winok::grad_output<T, b.value>(dM, dy, C, OH, OW, TH, TW, r0, nr, ld, ps); });
}

// V (36 planes of (C, nr*TW)) = B^T d B of the 6x6 input tiles (stride 4) of x, zero-padded by (ph, pw).
template <class T>
void wino4_input(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH, index_t TW,
                 index_t r0, index_t nr, index_t ld, index_t ps) {
  winok::with_width4<T>(TW,
                        [&](auto b) { winok::input4<T, b.value>(V, x, C, H, W, ph, pw, TH, TW, r0, nr, ld, ps); });
}

// y (N, C, OH, OW) 4x4 tiles of the block = act(A^T m A + bias) from M (36 planes of (C, nr*TW)).
template <class T>
void wino4_output(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                  index_t nr, index_t ld, index_t ps, const T* bias, bool relu) {
  winok::with_width4<T>(
      TW, [&](auto b) { winok::output4<T, b.value>(y, M, C, OH, OW, TH, TW, r0, nr, ld, ps, bias, relu); });
}

// dM (36 planes of (C, nr*TW)) = A dy A^T of the 4x4 output-gradient tiles of dy (zeros past the edge).
template <class T>
void wino4_grad_output(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                       index_t nr, index_t ld, index_t ps) {
  winok::with_width4<T>(
      TW, [&](auto b) { winok::grad_output4<T, b.value>(dM, dy, C, OH, OW, TH, TW, r0, nr, ld, ps); });
}

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: L x L blocks transposed in registers.
template <class T>
void wino_transpose(T* dst, index_t ldd, const T* src, index_t lds, index_t rows, index_t cols) {
  using VV = winok::VT<T, simd::kVecBytes>;
  constexpr index_t L = VV::L;
  const index_t rf = rows / L * L, cf = cols / L * L;
  for (index_t i = 0; i < rf; i += L) {
    for (index_t j = 0; j < cf; j += L) {
      typename VV::V v[L];
      for (index_t l = 0; l < L; ++l) v[l] = VV::load(src + (i + l) * lds + j);
      winok::transpose_stages<VV, L / 2>(v);
      for (index_t l = 0; l < L; ++l) simd::store(dst + (j + l) * ldd + i, v[l]);
    }
    for (index_t j = cf; j < cols; ++j) {
      for (index_t l = 0; l < L; ++l) dst[j * ldd + i + l] = src[(i + l) * lds + j];
    }
  }
  for (index_t i = rf; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

}  // namespace gk::GK_ISA_NS
