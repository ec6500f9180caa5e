// Winograd F(2x2, 3x3) transforms (Lavin & Gray 2016), compiled once per ISA.
//
// A block is a range of tile rows r in [r0, r0 + nr) over the whole batch (image
// r / TH, tile row r % TH); tile t of the block is (r - r0) * TW + tw. Transformed
// data is stored as 16 planes (xi = 4a + k) of (channels, tiles), plane stride
// C * nr * TW + kWinoPlanePad, so that each plane is one GEMM operand. Loops run over
// the tiles of one tile row (output: chunks of kTileChunk), vectorised over tiles:
// input rows are loaded as vectors and split into even and odd columns. The
// last vector of a row is always whole: stores spill into the next row's slots
// (written later: rows are visited in order, channel by channel) or into the pad
// after the plane, and loads past a row only feed lanes that are dropped.
#pragma once
#include <algorithm>

#include "gradkit/conv.h"
#include "simd_vec_impl.h"

namespace gk::GK_ISA_NS {

namespace winok {

constexpr index_t kTileChunk = 64;

// ev[l] = row[col0 + 2l], od[l] = row[col0 + 2l + 1], zero where the column is outside
// [0, W) or row is null. Straight from memory (no staging buffer: a vector load of
// freshly stored scalars stalls on store forwarding); [lo, hi) is memory that may be read.
template <class T>
GK_ALWAYS_INLINE void load_pairs(const T* row, index_t col0, index_t W, const T* lo, const T* hi, cv::Vec<T>& ev,
                                 cv::Vec<T>& od) {
  using V_ = cv::Vec<T>;
  using I_ = cv::IVec<T>;
  using IE = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;  // lane type of I_
  constexpr index_t L = cv::kLanes<T>;
  if (row == nullptr) {
    ev = od = V_{};
    return;
  }
  if (col0 >= 0 && col0 + 2 * L <= W) {  // inside the row
    cv::deinterleave(row + col0, ev, od);
    return;
  }
  const T* p = row + col0;
  if (p >= lo && p + 2 * L <= hi) {  // readable: mask the columns outside the row
    cv::deinterleave(p, ev, od);
    I_ ce;
    for (index_t l = 0; l < L; ++l) ce[l] = static_cast<IE>(col0 + 2 * l);
    const I_ zero{}, width = zero + static_cast<IE>(W), one = zero + 1;
    ev = (ce >= zero) & (ce < width) ? ev : V_{};
    const I_ co = ce + one;
    od = (co >= zero) & (co < width) ? od : V_{};
    return;
  }
  for (index_t l = 0; l < L; ++l) {  // at the ends of the tensor: element by element
    const index_t c = col0 + 2 * l;
    ev[l] = c >= 0 && c < W ? row[c] : T(0);
    od[l] = c + 1 >= 0 && c + 1 < W ? row[c + 1] : T(0);
  }
}

}  // namespace winok

// V (16, C, nr*TW) = B^T d B of the 4x4 input tiles of x (N, C, H, W), zero-padded by (ph, pw).
template <class T>
void wino_input(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH, index_t TW,
                index_t r0, index_t nr) {
  using V_ = cv::Vec<T>;
  constexpr index_t L = cv::kLanes<T>;
  const index_t Tn = nr * TW, plane = C * Tn + kWinoPlanePad;
  for (index_t c = 0; c < C; ++c) {
    for (index_t r = r0; r < r0 + nr; ++r) {
      const index_t n = r / TH, th = r % TH;
      const T* xc = x + (n * C + c) * H * W;
      const T* end = x + (n + 1) * C * H * W;
      const T* rows[4];
      for (int i = 0; i < 4; ++i) {
        const index_t ih = 2 * th - ph + i;
        rows[i] = ih >= 0 && ih < H ? xc + ih * W : nullptr;
      }
      T* out = V + c * Tn + (r - r0) * TW;
      for (index_t j = 0; j < TW; j += L) {
        V_ q[4][4];  // d B, row by row
        for (int i = 0; i < 4; ++i) {
          V_ d0, d1, d2, d3;
          winok::load_pairs(rows[i], 2 * j - pw, W, x, end, d0, d1);
          winok::load_pairs(rows[i], 2 * j + 2 - pw, W, x, end, d2, d3);
          q[i][0] = d0 - d2;
          q[i][1] = d1 + d2;
          q[i][2] = d2 - d1;
          q[i][3] = d1 - d3;
        }
        for (int k = 0; k < 4; ++k) {
          cv::store(out + (0 * 4 + k) * plane + j, q[0][k] - q[2][k]);
          cv::store(out + (1 * 4 + k) * plane + j, q[1][k] + q[2][k]);
          cv::store(out + (2 * 4 + k) * plane + j, q[2][k] - q[1][k]);
          cv::store(out + (3 * 4 + k) * plane + j, q[1][k] - q[3][k]);
        }
      }
    }
  }
}

// y (N, C, OH, OW) tiles of the block = act(A^T m A + bias) from M (16, C, nr*TW).
template <class T>
void wino_output(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0, index_t nr,
                 const T* bias, bool relu) {
  using V_ = cv::Vec<T>;
  constexpr index_t TC = winok::kTileChunk, L = cv::kLanes<T>;
  const index_t Tn = nr * TW, plane = C * Tn + kWinoPlanePad;
  alignas(64) T out[2][2 * (TC + L)];
  for (index_t r = r0; r < r0 + nr; ++r) {
    const index_t n = r / TH, th = r % TH;
    for (index_t c = 0; c < C; ++c) {
      const V_ b = cv::splat<T>(bias != nullptr ? bias[c] : T(0));
      const T* m = M + c * Tn + (r - r0) * TW;
      T* yc = y + (n * C + c) * OH * OW;
      for (index_t tw0 = 0; tw0 < TW; tw0 += TC) {
        const index_t nt = std::min(TC, TW - tw0);
        for (index_t j = 0; j < nt; j += L) {
          const T* src = m + tw0 + j;
          const index_t stride = plane;
          V_ s[4][2];  // (row a of m) A
          for (int a = 0; a < 4; ++a) {
            const V_ m0 = cv::load(src + (4 * a) * stride), m1 = cv::load(src + (4 * a + 1) * stride);
            const V_ m2 = cv::load(src + (4 * a + 2) * stride), m3 = cv::load(src + (4 * a + 3) * stride);
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
          cv::interleave(out[0] + 2 * j, v[0][0], v[0][1]);
          cv::interleave(out[1] + 2 * j, v[1][0], v[1][1]);
        }
        const index_t ow0 = 2 * tw0, w = std::min(2 * nt, OW - ow0);
        for (int i = 0; i < 2 && 2 * th + i < OH; ++i) cv::copy_n(yc + (2 * th + i) * OW + ow0, out[i], w);
      }
    }
  }
}

// dM (16, C, nr*TW) = A dy A^T of the 2x2 output-gradient tiles of dy (N, C, OH, OW) (zeros past the edge).
template <class T>
void wino_grad_output(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                      index_t nr) {
  using V_ = cv::Vec<T>;
  constexpr index_t L = cv::kLanes<T>;
  const index_t Tn = nr * TW, plane = C * Tn + kWinoPlanePad;
  for (index_t c = 0; c < C; ++c) {
    for (index_t r = r0; r < r0 + nr; ++r) {
      const index_t n = r / TH, th = r % TH;
      const T* dyc = dy + (n * C + c) * OH * OW;
      const T* end = dy + (n + 1) * C * OH * OW;
      const T* rows[2] = {dyc + 2 * th * OW, 2 * th + 1 < OH ? dyc + (2 * th + 1) * OW : nullptr};
      T* out = dM + c * Tn + (r - r0) * TW;
      for (index_t j = 0; j < TW; j += L) {
        V_ q[2][4];  // (row i of dy) A^T
        for (int i = 0; i < 2; ++i) {
          V_ g0, g1;
          winok::load_pairs(rows[i], 2 * j, OW, dy, end, g0, g1);
          q[i][0] = g0;
          q[i][1] = g0 + g1;
          q[i][2] = g0 - g1;
          q[i][3] = -g1;
        }
        for (int k = 0; k < 4; ++k) {
          cv::store(out + (0 * 4 + k) * plane + j, q[0][k]);
          cv::store(out + (1 * 4 + k) * plane + j, q[0][k] + q[1][k]);
          cv::store(out + (2 * 4 + k) * plane + j, q[0][k] - q[1][k]);
          cv::store(out + (3 * 4 + k) * plane + j, -q[1][k]);
        }
      }
    }
  }
}

}  // namespace gk::GK_ISA_NS
