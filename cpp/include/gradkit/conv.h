// 2-D convolution (NCHW input, PyTorch weights (OC, C/groups, KH, KW)).
//
// Drivers (cpp/conv/conv.cpp) run 3x3 stride-1 convolutions as Winograd
// F(2x2,3x3) (2.25x fewer multiplies; 16 GEMMs per block of tiles), and tile
// other shapes: they tile each image into row blocks of output
// pixels, build an im2col tile that stays in L2 and feed gk::gemm; a layer with
// few taps per output (C/groups * KH * KW <= kConvSmallK, e.g. a first layer
// with one input channel, or depthwise) uses direct kernels that are
// vectorised over output pixels instead, since its GEMM would be memory-bound
// (with stride-1 columns they read a zero-padded copy of the image instead of an
// im2col matrix, and sum dW in vector registers over a whole chunk of images).
// Per-ISA kernels come from a dispatch table (docs/design.md).
#pragma once
#include "gradkit/common.h"
#include "gradkit/gemm.h"
#include "gradkit/isa.h"

namespace gk {

struct ConvShape {
  index_t N, C, H, W;      // input
  index_t OC, KH, KW;      // weight (OC, C / G, KH, KW)
  index_t SH, SW, PH, PW, DH, DW, G;
  index_t OH, OW;          // output
};

// Elements after Winograd-transformed data that the transforms may read (>= one vector of any ISA).
constexpr index_t kWinoPlanePad = 64;

// Taps per output (C/G*KH*KW) up to which the direct small-K kernels are used.
constexpr index_t kConvSmallK = 32;

// The zero-padded copy of one image's group channels that the direct small-K kernels
// read: Cg planes of Hp rows of ldp elements, wide enough for every column a vector of
// up to kMaxVecBytes reads (the same layout for every ISA).
constexpr index_t kMaxVecBytes = 64;
struct DirectPad {
  index_t Hp, ldp, plane;
};
// Per-ISA kernels call direct_pad_layout<IsaTag>: their own copy (isa_common.h).
template <class Tag = void>
DirectPad direct_pad_layout(const ConvShape& s, index_t elem_bytes) {
  DirectPad d;
  d.Hp = s.H + 2 * s.PH;
  const index_t lanes = kMaxVecBytes / elem_bytes;  // (no common.h helpers: this runs per ISA too)
  const index_t reach = (s.OW + lanes - 1) / lanes * lanes + (s.KW - 1) * s.DW;
  d.ldp = s.W + 2 * s.PW > reach ? s.W + 2 * s.PW : reach;
  d.plane = d.Hp * d.ldp;
  return d;
}

// y (N,OC,OH,OW) = act(conv(x (N,C,H,W), w) + b); b may be null.
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act = Activation::none,
                    int nthreads = 0);

// dy (N,OC,OH,OW). dx (N,C,H,W) is overwritten (skipped when null); dw
// (OC,C/G,KH,KW) and db (OC,) are ADDED into (each skipped when null).
// dw and db are reduced over images in fixed chunks summed in a fixed order:
// the same bits for any thread count.
template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s, int nthreads = 0);

// Per-ISA kernels over one image and one tile of output rows [oh0, oh0 + nrows).
template <class T>
struct ConvKernels {
  // col (Cg*KH*KW, nrows*OW) <- x_img channels [c0, c0 + Cg) (C,H,W), zeros where padded.
  void (*im2col)(T* col, const T* x_img, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows);
  // x_img channels [c0, c0 + Cg) += col2im(col).
  void (*col2im)(T* x_img, const T* col, const ConvShape& s, index_t c0, index_t Cg, index_t oh0, index_t nrows);
  // y (M, ldy) [:, :n] = act(w (M,K) @ col (K,n) + b); b may be null.
  void (*smallk_forward)(T* y, index_t ldy, const T* col, const T* w, const T* b, index_t M, index_t K, index_t n,
                         bool relu);
  // dw (M,K) += dy (M, ldy)[:, :n] @ col (K,n)^T; db (M,) += row sums of dy (db may be null).
  void (*smallk_dweight)(T* dw, T* db, const T* dy, index_t ldy, const T* col, index_t M, index_t K, index_t n);
  // Direct small-K kernels for stride-1 columns, on the padded copy xp of one image's group
  // (direct_pad_layout); M output channels, K = Cg*KH*KW taps.
  // xp <- channels [c0, c0 + Cg) of x_img, zero-padded.
  void (*direct_pad)(T* xp, const T* x_img, const ConvShape& s, index_t c0, index_t Cg);
  // y (M, OH*OW) = act(w (M,K) * taps of xp + b); b may be null.
  void (*direct_forward)(T* y, const T* xp, const T* w, const T* b, const ConvShape& s, index_t M, bool relu);
  // acc (M, K+1) vectors of kMaxVecBytes += lane-wise sums of dy (M, OH*OW) times each tap
  // of xp; column K sums dy itself when with_db.
  void (*direct_dweight)(T* acc, const T* dy, const T* xp, const ConvShape& s, index_t M, bool with_db);
  // dw (M,K) += lane sums of acc[:, :K]; db (M,) += lane sums of acc[:, K] (each skipped when null).
  void (*direct_finish)(T* dw, T* db, const T* acc, index_t M, index_t K);
  // db (M,) += row sums of dy (M, ldy)[:, :n].
  void (*row_sum)(T* db, const T* dy, index_t ldy, index_t M, index_t n);
  // Winograd F(2x2,3x3) over the tile rows [r0, r0 + nr) of a batch (TH x TW tiles per image);
  // transformed data is 16 planes of (channels, nr*TW): row c of plane xi at xi*ps + c*ld.
  // See cpp/conv/winograd_impl.h.
  // V = B^T d B of x (N,C,H,W) zero-padded by (ph, pw).
  void (*wino_input)(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH,
                     index_t TW, index_t r0, index_t nr, index_t ld, index_t ps);
  // y (N,C,OH,OW) tiles = act(A^T m A + bias) from M; bias may be null.
  void (*wino_output)(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                      index_t nr, index_t ld, index_t ps, const T* bias, bool relu);
  // dM = A dy A^T of dy (N,C,OH,OW).
  void (*wino_grad_output)(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                           index_t nr, index_t ld, index_t ps);
  // F(4x4,3x3): the same over 6x6 input tiles at a stride of 4, 36 planes.
  void (*wino4_input)(T* V, const T* x, index_t C, index_t H, index_t W, index_t ph, index_t pw, index_t TH,
                      index_t TW, index_t r0, index_t nr, index_t ld, index_t ps);
  void (*wino4_output)(T* y, const T* M, index_t C, index_t OH, index_t OW, index_t TH, index_t TW, index_t r0,
                       index_t nr, index_t ld, index_t ps, const T* bias, bool relu);
  void (*wino4_grad_output)(T* dM, const T* dy, index_t C, index_t OH, index_t OW, index_t TH, index_t TW,
                            index_t r0, index_t nr, index_t ld, index_t ps);
  // dst (cols, ldd)[:, :rows] = transpose of src (rows, lds)[:, :cols].
  void (*transpose)(T* dst, index_t ldd, const T* src, index_t lds, index_t rows, index_t cols);
};

using ConvTable = DtypeTable<ConvKernels>;
GK_DECLARE_DISPATCH(conv, ConvTable)

}  // namespace gk
