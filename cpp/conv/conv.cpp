// Conv2d drivers: tiling, threading, scratch memory; kernels come from conv_table().
#include "gradkit/conv.h"

#include <algorithm>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(conv, ConvTable)

namespace {

// Scratch memory reused across calls (per calling thread and slot; grows, never shrinks):
// a fresh multi-megabyte allocation per call costs a page fault per 4 KiB.
enum Slot { kSlotWeights = 0, kSlotTiles = 1, kSlotPartials = 2, kNumSlots = 3 };
template <class T>
T* scratch(Slot slot, index_t n) {
  thread_local AlignedBuffer<T> buffers[kNumSlots];
  buffers[slot].resize(std::max<index_t>(n, 1));
  return buffers[slot].data();
}

// An im2col tile (Kg, rows*OW) is kept below this size so that it stays in L2
// between being written and being packed by the GEMM.
constexpr index_t kColTileBytes = 512 * 1024;
// The padded image copy of the direct small-K kernels (one image, one group) stays below this.
constexpr index_t kPadBytes = 1024 * 1024;
// dW and db are summed over images in this many fixed chunks (any thread count).
constexpr index_t kWeightChunks = 8;

struct Plan {
  index_t Cg, OCg, Kg, P;
  index_t rows;       // output rows per tile
  index_t col_elems;  // one im2col tile
  bool small_k;       // direct kernels vectorised over pixels (no GEMM)
  bool padded;        // small_k with stride-1 columns: the direct kernels read a padded image copy
  DirectPad pad;      // its layout (padded)
  bool direct;        // 1x1, stride 1, no padding: the input is its own im2col matrix
};

Plan make_plan(const ConvShape& s, index_t elem_bytes) {
  Plan p;
  p.Cg = s.C / s.G;
  p.OCg = s.OC / s.G;
  p.Kg = p.Cg * s.KH * s.KW;
  p.P = s.OH * s.OW;
  p.small_k = p.Kg <= kConvSmallK;
  p.pad = direct_pad_layout(s, elem_bytes);
  p.padded = p.small_k && s.SW == 1 && p.Cg * p.pad.plane * elem_bytes <= kPadBytes;
  p.direct = !p.small_k && s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PH == 0 && s.PW == 0;
  const index_t row_bytes = std::max<index_t>(p.Kg * s.OW * elem_bytes, 1);
  index_t rows = std::clamp<index_t>(kColTileBytes / row_bytes, 1, std::max<index_t>(s.OH, 1));
  const index_t ntiles = ceil_div(s.OH, rows);
  p.rows = std::max<index_t>(ceil_div(s.OH, std::max<index_t>(ntiles, 1)), 1);  // even tiles
  p.col_elems = p.direct ? 0 : p.Kg * p.rows * s.OW;
  return p;
}

// The im2col matrix (Kg, nrows*OW) of group g and output rows [oh0, oh0 + nrows),
// row stride ldb: the image itself for direct plans (x is (Cg, P)), else built in col.
template <class T>
const T* tile_columns(const ConvKernels<T>& k, const Plan& pl, const ConvShape& s, const T* ximg, T* col, index_t g,
                      index_t oh0, index_t nrows, index_t& ldb) {
  if (pl.direct) {
    ldb = pl.P;
    return ximg + g * pl.Cg * pl.P + oh0 * s.OW;
  }
  k.im2col(col, ximg, s, g * pl.Cg, pl.Cg, oh0, nrows);
  ldb = nrows * s.OW;
  return col;
}

// body(item, thread_index, inner_threads) for every item of [0, n): with nt > 1 threads the
// items are handed out one at a time as threads come free (inner_threads = 1; on a shared
// machine a stalled core then costs an item, not half the work); with nt == 1 they run on
// the caller with the GEMM threaded inside (inner_threads = nthreads). Items write disjoint
// outputs or their own partials, so results do not depend on which thread runs which.
template <class F>
void run_items(index_t n, int nt, int nthreads, F&& body) {
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (index_t i = 0; i < n; ++i) body(i, static_cast<index_t>(omp_get_thread_num()), 1);
  } else {
    for (index_t i = 0; i < n; ++i) body(i, index_t{0}, nthreads);
  }
}

// Sums the chunk partials part[c * psize + i] into part[i] in chunk order (c = 0, 1, ...).
template <class T>
void reduce_chunks(T* part, index_t psize, index_t nch, int nthreads) {
  parallel_for(psize, psize * nch, [&](index_t i0, index_t i1) {
    for (index_t c = 1; c < nch; ++c) {
      for (index_t i = i0; i < i1; ++i) part[i] += part[c * psize + i];
    }
  }, nthreads);
}

// ---- Winograd F(2x2, 3x3) -------------------------------------------------------------

// The GEMM micro-kernel's column count (its B slivers) for T. The Winograd passes call the
// current ISA's GEMM micro-kernel directly (gemm_table().get<T>()).
template <class T>
index_t gemm_nr() {
  return gemm_table().get<T>().nr;
}

// Winograd-domain products whose transformed weight plane is at most this many bytes (half of
// Zen 3's L2) run the GEMM micro-kernel straight on the transformed planes: each B sliver in L1,
// the weight plane (read in place, row-major) in L2 across the slivers of a block. At 16-64
// channels the GEMM driver's per-call work (edge packing, blocking) costs a sizeable part of
// products this small; at 128-256 channels it packs the whole weight plane again for every
// block (256 channels at 8x8, forward, 1 thread, blocks of 256 tiles: 15% fewer
// CPU samples than through gk::gemm). Larger planes go through gk::gemm.
constexpr index_t kWinoDirectBytes = 256 * 1024;
// The weight gradient's micro-kernel calls run over K (tiles) blocks of this many (a B sliver of
// kWinoGradKBlock x NR stays in L1 across the A panels).
constexpr index_t kWinoGradKBlock = 256;

// Transformed operands of one block ((MT+2)^2 planes of (Cin + Cout) x tiles) stay below this
// (in L2): forward and input gradient; weight gradient (a longer GEMM depth pays off there).
constexpr index_t kWinoBlockBytes = 768 * 1024;
constexpr index_t kWinoGradBlockBytes = 1024 * 1024;
// The weight gradient sums dU and db over images in this many fixed chunks (any thread count).
constexpr index_t kWinoChunks = 4;
// The forward / input-gradient pass cuts the batch into at least this many blocks per thread.
constexpr index_t kWinoBlocksPerThread = 2;

// The tiles per block that the Winograd products are at least this deep over (when the batch has
// them), in units of Cin Cout / (Cin + Cout) (half the harmonic mean of the channel counts). Each
// block reads every transformed weight plane once (forward: U; weight gradient: dU, read and
// written), Cin Cout values a plane, against Cin + Cout values per tile of transformed data. The
// blocks then outgrow the L2 budgets below at 128-256 channels (into L3): at 256 channels on 8x8
// images the budgets alone gave blocks of 12-14 tiles, products 14 deep over 256 x 256 planes.
// Measured (batch 128, 2 threads, Zen 3, CPU time, against the budgets alone): the weight gradient
// at 2 units 127 -> 66 ms at 256 channels on 8x8, 58 -> 35 ms at 128 -> 256 (1 unit: 43 ms); the
// forward at 1 unit 57 -> 48 ms at 256 channels, unchanged at 128 (2 units: 15% slower at 128
// channels on 16x16, its blocks of 4.7 MB per thread out of L2).
constexpr index_t kWinoDepthUnits = 1, kWinoGradDepthUnits = 2;
index_t wino_min_tiles(index_t Cin, index_t Cout, index_t units) {
  return units * Cin * Cout / std::max<index_t>(Cin + Cout, 1);
}

bool use_winograd(const ConvShape& s, const Plan& pl) {
  return s.KH == 3 && s.KW == 3 && s.SH == 1 && s.SW == 1 && s.DH == 1 && s.DW == 1 && s.G == 1 && s.PH <= 2 &&
         s.PW <= 2 && !pl.small_k && s.OC >= 4;
}

// Tile rows per block for Cin input and Cout output channels and np planes: about what fits
// the block budget, or what gives wino_min_tiles(Cin, Cout, units) tiles if more (from half of it
// to a quarter more), the count whose nr * TW tiles waste the least when rounded up to whole
// GEMM slivers of `sliver` columns.
index_t wino_rows(index_t np, index_t Cin, index_t Cout, index_t TW, index_t total_rows, index_t elem_bytes,
                  index_t sliver, index_t budget, index_t units) {
  const index_t fit = budget / (np * (Cin + Cout) * TW * elem_bytes);
  const index_t rmax = std::clamp<index_t>(std::max(fit, ceil_div(wino_min_tiles(Cin, Cout, units), TW)), 1,
                                           std::max<index_t>(total_rows, 1));
  index_t best = rmax;
  const index_t hi = std::min(std::max<index_t>(total_rows, 1), rmax + rmax / 4);
  for (index_t r = hi; 2 * r >= rmax && r >= 1; --r) {
    // waste(r) < waste(best), compared as fractions (round_up(r TW) - r TW) / (r TW)
    if ((round_up(r * TW, sliver) - r * TW) * best < (round_up(best * TW, sliver) - best * TW) * r) best = r;
  }
  return best;
}

// G of F(MT x MT, 3x3): (MT + 2) x 3 (Lavin & Gray 2016).
template <int MT>
struct WinoG;
template <>
struct WinoG<2> {
  static constexpr double g[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
};
template <>
struct WinoG<4> {
  static constexpr double g[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
};

// Kernels are transformed kWinoWeightBlock at a time, each value a short vector over the
// block (the innermost loops vectorise); the planes lie a whole plane apart (often a
// multiple of 4 KiB), so each plane gets a contiguous run per block (one value per plane
// per kernel would land in the same few cache sets).
constexpr int kWinoWeightBlock = 16;

// U ((MT+2)^2, prows, cols) = G g G^T of each 3x3 kernel of w (OC, C, 3, 3): rows = OC, cols = C;
// with flip, g is w[o][c] rotated by 180 degrees and stored at [c][o] (the kernel of the input
// gradient). Rows from rows to prows (>= rows) are zero.
template <int MT, class T>
void wino_weights(T* U, const T* w, index_t OC, index_t C, bool flip, index_t prows, int nthreads) {
  constexpr int A = MT + 2, B = kWinoWeightBlock;
  const auto& G = WinoG<MT>::g;
  const index_t nrow = flip ? C : OC, ncol = flip ? OC : C, plane = prows * ncol;  // U plane: (prows, ncol)
  for (index_t xi = 0; xi < A * A; ++xi) std::fill(U + xi * plane + nrow * ncol, U + (xi + 1) * plane, T(0));
  parallel_for(nrow, 20 * A * A * plane, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      for (index_t q0 = 0; q0 < ncol; q0 += B) {
        const index_t nq = std::min<index_t>(B, ncol - q0);
        T g[9][B] = {};  // tap-major
        for (index_t q = 0; q < nq; ++q) {
          const T* k = flip ? w + ((q0 + q) * C + r) * 9 : w + (r * C + q0 + q) * 9;
          for (int tap = 0; tap < 9; ++tap) g[tap][q] = flip ? k[8 - tap] : k[tap];
        }
        T t[A][3][B];  // G g
        for (int a = 0; a < A; ++a)
          for (int j = 0; j < 3; ++j)
            for (int q = 0; q < B; ++q) {
              T sum = 0;
              for (int i = 0; i < 3; ++i) {
                if (G[a][i] != 0) sum += T(G[a][i]) * g[3 * i + j][q];
              }
              t[a][j][q] = sum;
            }
        for (int a = 0; a < A; ++a)
          for (int k = 0; k < A; ++k) {
            T u[B];
            for (int q = 0; q < B; ++q) {
              T sum = 0;
              for (int j = 0; j < 3; ++j) {
                if (G[k][j] != 0) sum += t[a][j][q] * T(G[k][j]);
              }
              u[q] = sum;
            }
            std::copy(u, u + nq, U + (A * a + k) * plane + r * ncol + q0);
          }
      }
    }
  }, nthreads);
}

// dw (OC, C, 3, 3) += G^T du G of each (o, c) of dU ((MT+2)^2, OC, C), a block of kernels at a
// time (as wino_weights); dU is the sum of the nch chunk partials at dU + c * pstride, added in
// chunk order (c = 0, 1, ...) as the block is read.
template <int MT, class T>
void wino_weight_grad(T* dw, const T* dU, index_t pstride, index_t nch, index_t OC, index_t C, int nthreads) {
  constexpr int A = MT + 2, B = kWinoWeightBlock;
  const auto& G = WinoG<MT>::g;
  const index_t plane = OC * C;
  parallel_for(ceil_div(plane, B), 20 * A * A * plane, [&](index_t b0, index_t b1) {
    for (index_t i0 = b0 * B; i0 < std::min(plane, b1 * B); i0 += B) {
      const index_t ni = std::min<index_t>(B, plane - i0);
      T du[A * A][B] = {};
      for (int xi = 0; xi < A * A; ++xi) {
        std::copy(dU + xi * plane + i0, dU + xi * plane + i0 + ni, du[xi]);
        for (index_t c = 1; c < nch; ++c) {
          const T* src = dU + c * pstride + xi * plane + i0;
          for (index_t i = 0; i < ni; ++i) du[xi][i] += src[i];
        }
      }
      T t[A][3][B];  // du G
      for (int a = 0; a < A; ++a)
        for (int j = 0; j < 3; ++j)
          for (int i = 0; i < B; ++i) {
            T sum = 0;
            for (int k = 0; k < A; ++k) {
              if (G[k][j] != 0) sum += du[A * a + k][i] * T(G[k][j]);
            }
            t[a][j][i] = sum;
          }
      T g[9][B];  // G^T du G, tap-major
      for (int r = 0; r < 3; ++r)
        for (int j = 0; j < 3; ++j)
          for (int i = 0; i < B; ++i) {
            T sum = 0;
            for (int a = 0; a < A; ++a) {
              if (G[a][r] != 0) sum += T(G[a][r]) * t[a][j][i];
            }
            g[3 * r + j][i] = sum;
          }
      for (index_t i = 0; i < ni; ++i) {
        for (int tap = 0; tap < 9; ++tap) dw[(i0 + i) * 9 + tap] += g[tap][i];
      }
    }
  }, nthreads);
}

// The output tile size for OH x OW outputs: F(4x4, 3x3) (36 products per 4x4 tile, against 16
// per 2x2 tile of F(2x2, 3x3)) where it saves at least 25% of the products after rounding up to
// whole tiles, since its transforms cost more per product saved. Measured (fwd + dX + dW, 2
// threads, Xeon): at 28x28 F(4x4) is 30% faster; at 14x14 and 13x13 (27% saved) it is 9-19%
// faster with the AVX2 kernels and 0-13% with AVX-512 (C32->64 and C64->128, batch 64-128); at
// 10x10 (19% saved) 8% faster on AVX2 but 3% slower on AVX-512, so F(2x2) stays there.
int wino_tile(index_t OH, index_t OW) {
  const index_t f4 = 36 * ceil_div(OH, 4) * ceil_div(OW, 4), f2 = 16 * ceil_div(OH, 2) * ceil_div(OW, 2);
  return 4 * f4 <= 3 * f2 ? 4 : 2;
}

// Rows of a transformed weight plane (Cout, Cin): Cout rounded up to whole micro-kernel panels
// (zero rows) when the products run the micro-kernel directly, so that its A panels are read in place.
template <class T>
bool wino_direct(index_t Cout, index_t Cin) {
  return round_up(Cout, gemm_table().get<T>().mr) * Cin * static_cast<index_t>(sizeof(T)) <= kWinoDirectBytes;
}
template <class T>
index_t wino_weight_rows(index_t Cout, index_t Cin) {
  return wino_direct<T>(Cout, Cin) ? round_up(Cout, gemm_table().get<T>().mr) : Cout;
}

// y (N, Cout, OH, OW) = act(conv3x3(x (N, Cin, H, W), padding (ph, pw)) + bias) from U ((MT+2)^2,
// Up, Cin) with Up = wino_weight_rows(Cout, Cin): per block of tile rows, input transform, one
// GEMM per plane, output transform. The blocks go to threads as they come free (run_items).
template <int MT, class T>
void wino_pass(T* y, const T* x, const T* U, const T* bias, bool relu, index_t N, index_t Cin, index_t H, index_t W,
               index_t Cout, index_t OH, index_t OW, index_t ph, index_t pw, int nthreads) {
  constexpr index_t NP = (MT + 2) * (MT + 2);
  const ConvKernels<T>& k = conv_table().get<T>();
  const GemmKernels<T>& gk = gemm_table().get<T>();
  const index_t Up = wino_weight_rows<T>(Cout, Cin);
  const bool direct = wino_direct<T>(Cout, Cin);
  GemmUkernelParams<T> prm;  // alpha 1, beta 0: M = U V
  const auto input = MT == 2 ? k.wino_input : k.wino4_input;
  const auto output = MT == 2 ? k.wino_output : k.wino4_output;
  const index_t TH = ceil_div(OH, MT), TW = ceil_div(OW, MT), nr_gemm = gemm_nr<T>();
  // Blocks of R tile rows over the whole batch, at least kWinoBlocksPerThread per thread when the batch
  // has the rows (the blocks are this pass's only parallelism; each output is one product over Cin
  // whatever the blocks, so the bits do not depend on them).
  const int want = threads_for(N * Cout * OH * OW * Cin, nthreads);
  index_t R = wino_rows(NP, Cin, Cout, TW, N * TH, sizeof(T), nr_gemm, kWinoBlockBytes, kWinoDepthUnits);
  if (want > 1) R = std::min(R, std::max<index_t>(1, ceil_div(N * TH, kWinoBlocksPerThread * want)));
  const index_t wmax = round_up(R * TW, nr_gemm);
  const index_t vsize = NP * (Cin * wmax + kWinoPlanePad), msize = NP * (Cout * wmax + kWinoPlanePad);
  const index_t nblocks = ceil_div(N * TH, R);
  const int nt = static_cast<int>(std::min<index_t>(want, nblocks));
  T* const tiles = scratch<T>(kSlotTiles, nt * (vsize + msize));
  run_items(nblocks, nt, nthreads, [&](index_t blk, index_t t, int inner) {
    T* V = tiles + t * (vsize + msize);
    T* M = V + vsize;
    // Plane rows of ld >= nr * TW (whole GEMM slivers: B is read in place, never packed);
    // planes apart by a little more than their size (no cache-set aliasing between them).
    const index_t r0 = blk * R, nr = std::min(R, N * TH - r0), ld = round_up(nr * TW, nr_gemm);
    const index_t vplane = Cin * ld + kWinoPlanePad, mplane = Cout * ld + kWinoPlanePad;
    input(V, x, Cin, H, W, ph, pw, TH, TW, r0, nr, ld, vplane);
    for (index_t xi = 0; xi < NP; ++xi) {
      const T* Ux = U + xi * Up * Cin;
      const T* Vx = V + xi * vplane;
      T* Mx = M + xi * mplane;
      if (!direct) {
        gemm<T>(Cout, ld, Cin, T(1), Ux, Cin, 1, Vx, ld, 1, T(0), Mx, ld, {}, inner);
        continue;
      }
      // B slivers of V read in place (ld is whole slivers), U's panels in place (rows padded to MR).
      for (index_t jr = 0; jr < ld; jr += gk.nr) {
        for (index_t ir = 0; ir < Cout; ir += gk.mr) {
          gk.ukernel(Cin, Ux + ir * Cin, Cin, 1, Vx + jr, ld, Mx + ir * ld + jr, ld, std::min(gk.mr, Cout - ir), gk.nr,
                     prm);
        }
      }
    }
    output(y, M, Cout, OH, OW, TH, TW, r0, nr, ld, mplane, bias, relu);
  });
}

// y = act(conv3x3(x, w) + bias) by Winograd: the tile size from the output's size; with flip
// (the input gradient), w is rotated and transposed.
template <class T>
void wino_conv(T* y, const T* x, const T* w, const T* bias, bool relu, bool flip, index_t N, index_t Cin, index_t H,
               index_t W, index_t Cout, index_t OH, index_t OW, index_t ph, index_t pw, int nthreads) {
  const index_t OC = flip ? Cin : Cout, C = flip ? Cout : Cin;  // w is (OC, C, 3, 3)
  const index_t Up = wino_weight_rows<T>(Cout, Cin);  // rows of U's planes (Cout, padded)
  if (wino_tile(OH, OW) == 4) {
    T* U = scratch<T>(kSlotWeights, 36 * Up * Cin);
    wino_weights<4>(U, w, OC, C, flip, Up, nthreads);
    wino_pass<4>(y, x, U, bias, relu, N, Cin, H, W, Cout, OH, OW, ph, pw, nthreads);
  } else {
    T* U = scratch<T>(kSlotWeights, 16 * Up * Cin);
    wino_weights<2>(U, w, OC, C, flip, Up, nthreads);
    wino_pass<2>(y, x, U, bias, relu, N, Cin, H, W, Cout, OH, OW, ph, pw, nthreads);
  }
}

// dw += G^T (sum over tiles of dM V^T) G and db += sums of dy, in fixed image chunks.
template <int MT, class T>
void wino_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvShape& s, int nthreads) {
  constexpr index_t NP = (MT + 2) * (MT + 2);
  // The plane of dM whose entries are the sums of each tile of dy (row and column 1 of A are ones).
  constexpr index_t kSumPlane = (MT + 2) + 1;
  const ConvKernels<T>& k = conv_table().get<T>();
  const auto input = MT == 2 ? k.wino_input : k.wino4_input;
  const auto grad_output = MT == 2 ? k.wino_grad_output : k.wino4_grad_output;
  const index_t TH = ceil_div(s.OH, MT), TW = ceil_div(s.OW, MT), P = s.OH * s.OW;
  const GemmKernels<T>& gk = gemm_table().get<T>();
  const bool direct = wino_direct<T>(s.OC, s.C);
  // direct: the micro-kernel reads dM's rows in place, whole panels of MR (rows past OC zeroed)
  const index_t OCp = direct ? round_up(s.OC, gk.mr) : s.OC;
  const index_t nch = std::min(s.N, kWinoChunks);
  // Blocks of equal size within the largest chunk (no short remainder block).
  const index_t crows = ceil_div(s.N, nch) * TH;
  const index_t R0 = wino_rows(NP, s.C, s.OC, TW, crows, sizeof(T), 1, kWinoGradBlockBytes, kWinoGradDepthUnits);
  const index_t R = ceil_div(crows, ceil_div(crows, R0));
  const index_t vsize = NP * s.C * R * TW + kWinoPlanePad, msize = NP * OCp * R * TW + kWinoPlanePad;
  const index_t usize = NP * s.OC * s.C, psize = usize + s.OC;
  const int nt = static_cast<int>(std::min<index_t>(threads_for(s.N * s.OC * P * s.C, nthreads), nch));
  T* const partial = scratch<T>(kSlotPartials, nch * psize);
  const index_t tsize = R * TW * s.C + gk.nr;  // one transposed plane of V (+ the last sliver's overhang)
  T* const tiles = scratch<T>(kSlotTiles, dw != nullptr ? nt * (vsize + msize + tsize) : 1);
  run_items(nch, nt, nthreads, [&](index_t c, index_t t, int inner) {
    T* pu = partial + c * psize;  // dU is written by the chunk's first block (beta 0), then accumulated
    std::fill(pu + (TH > 0 ? usize : 0), pu + psize, T(0));  // (no blocks at all when no output rows)
    const index_t n0 = s.N * c / nch, n1 = s.N * (c + 1) / nch;
    T* V = tiles + t * (vsize + msize + tsize);
    T* dM = V + vsize;
    T* Vt = dM + msize;
    GemmUkernelParams<T> prm;
    index_t zeroed_ld = -1;
    for (index_t r0 = n0 * TH; dw != nullptr && r0 < n1 * TH; r0 += R) {
      const index_t nr = std::min(R, n1 * TH - r0), Tn = nr * TW, ld = NP * Tn;  // planes interleaved
      const bool first = r0 == n0 * TH;
      input(V, x, s.C, s.H, s.W, s.PH, s.PW, TH, TW, r0, nr, ld, Tn);
      grad_output(dM, dy, s.OC, s.OH, s.OW, TH, TW, r0, nr, ld, Tn);
      if (OCp > s.OC && ld != zeroed_ld) {  // rows past OC feed accumulators that are never stored
        std::fill(dM + s.OC * ld, dM + OCp * ld, T(0));
        zeroed_ld = ld;
      }
      for (index_t xi = 0; xi < NP; ++xi) {
        // dU_xi (OC, C) += dM_xi (OC, Tn) @ V_xi^T (Tn, C); V_xi^T made row-major first, so that
        // both operands are read in place instead of packed.
        k.transpose(Vt, s.C, V + xi * Tn, ld, s.C, Tn);
        T* dU = pu + xi * s.OC * s.C;
        if (!direct) {
          gemm<T>(s.OC, s.C, Tn, T(1), dM + xi * Tn, ld, 1, Vt, s.C, 1, T(first ? 0 : 1), dU, s.C, {}, inner);
          continue;
        }
        for (index_t p0 = 0; p0 < Tn; p0 += kWinoGradKBlock) {
          const index_t kc = std::min(kWinoGradKBlock, Tn - p0);
          prm.beta = first && p0 == 0 ? T(0) : T(1);  // dU (+)= dM V^T
          for (index_t jr = 0; jr < s.C; jr += gk.nr) {
            for (index_t ir = 0; ir < s.OC; ir += gk.mr) {
              gk.ukernel(kc, dM + xi * Tn + ir * ld + p0, ld, 1, Vt + p0 * s.C + jr, s.C, dU + ir * s.C + jr, s.C,
                         std::min(gk.mr, s.OC - ir), std::min(gk.nr, s.C - jr), prm);
            }
          }
        }
      }
      // db from the tile-sum plane of dM, in L2, rather than from dy again.
      if (db != nullptr) k.row_sum(pu + usize, dM + kSumPlane * Tn, ld, s.OC, Tn);
    }
    for (index_t n = n0; db != nullptr && dw == nullptr && n < n1; ++n) {
      k.row_sum(pu + usize, dy + n * s.OC * P, P, s.OC, P);
    }
  });
  if (dw != nullptr) wino_weight_grad<MT>(dw, partial, psize, nch, s.OC, s.C, nthreads);
  for (index_t o = 0; db != nullptr && o < s.OC; ++o) {
    T sum = partial[usize + o];
    for (index_t c = 1; c < nch; ++c) sum += partial[c * psize + usize + o];  // chunk order, as reduce_chunks
    db[o] += sum;
  }
}

}  // namespace

// x (N,C,H,W), w (OC,C/G,KH,KW), b (OC,) or null, y (N,OC,OH,OW);
// parallel over images (GEMM threaded inside when there are fewer images than threads).
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, int nthreads) {
  const Plan pl = make_plan(s, sizeof(T));
  if (s.N == 0 || s.OC == 0 || pl.P == 0) return;
  if (use_winograd(s, pl)) {
    wino_conv(y, x, w, b, act == Activation::relu, false, s.N, s.C, s.H, s.W, s.OC, s.OH, s.OW, s.PH, s.PW,
              nthreads);
    return;
  }
  const ConvKernels<T>& k = conv_table().get<T>();
  const int nt = static_cast<int>(std::min<index_t>(threads_for(s.N * s.OC * pl.P * pl.Kg, nthreads), s.N));
  if (pl.padded) {
    const index_t xpsize = pl.Cg * pl.pad.plane;
    T* const xps = scratch<T>(kSlotTiles, nt * xpsize);
    run_items(s.N, nt, nthreads, [&](index_t n, index_t t, int) {
      T* xp = xps + t * xpsize;
      for (index_t g = 0; g < s.G; ++g) {
        k.direct_pad(xp, x + n * s.C * s.H * s.W, s, g * pl.Cg, pl.Cg);
        k.direct_forward(y + (n * s.OC + g * pl.OCg) * pl.P, xp, w + g * pl.OCg * pl.Kg,
                         b != nullptr ? b + g * pl.OCg : nullptr, s, pl.OCg, act == Activation::relu);
      }
    });
    return;
  }
  T* const cols = scratch<T>(kSlotTiles, nt * pl.col_elems);
  run_items(s.N, nt, nthreads, [&](index_t n, index_t t, int inner) {
    T* col = cols + t * pl.col_elems;
    const T* ximg = x + n * s.C * s.H * s.W;
    for (index_t g = 0; g < s.G; ++g) {
      const T* wg = w + g * pl.OCg * pl.Kg;
      const T* bg = b != nullptr ? b + g * pl.OCg : nullptr;
      for (index_t oh0 = 0; oh0 < s.OH; oh0 += pl.rows) {
        const index_t nrows = std::min(pl.rows, s.OH - oh0), pt = nrows * s.OW, p0 = oh0 * s.OW;
        T* yt = y + (n * s.OC + g * pl.OCg) * pl.P + p0;
        index_t ldb;
        const T* B = tile_columns(k, pl, s, ximg, col, g, oh0, nrows, ldb);
        if (pl.small_k) {
          k.smallk_forward(yt, pl.P, col, wg, bg, pl.OCg, pl.Kg, pt, act == Activation::relu);
        } else {
          GemmEpilogue<T> ep;
          ep.bias = bg;
          ep.bias_per_row = true;
          ep.act = act;
          gemm<T>(pl.OCg, pt, pl.Kg, T(1), wg, pl.Kg, 1, B, ldb, 1, T(0), yt, pl.P, ep, inner);
        }
      }
    }
  });
}

// dy (N,OC,OH,OW), x (N,C,H,W), w (OC,C/G,KH,KW) -> dx (N,C,H,W) overwritten,
// dw (OC,C/G,KH,KW) and db (OC,) accumulated; each output skipped when null.
// Parallel over fixed chunks of images; each chunk keeps its own dw/db partial,
// summed in chunk order at the end, so the bits do not depend on the thread count.
template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s, int nthreads) {
  const Plan pl = make_plan(s, sizeof(T));
  if (s.N == 0) return;
  if (use_winograd(s, pl)) {
    if (dx != nullptr) {  // dx = conv3x3(dy, w rotated and transposed), padding 2 - p
      wino_conv(dx, dy, w, static_cast<const T*>(nullptr), false, true, s.N, s.OC, s.OH, s.OW, s.C, s.H, s.W,
                2 - s.PH, 2 - s.PW, nthreads);
    }
    if (dw != nullptr || db != nullptr) {
      if (wino_tile(s.OH, s.OW) == 4) {
        wino_backward_weight<4>(dw, db, dy, x, s, nthreads);
      } else {
        wino_backward_weight<2>(dw, db, dy, x, s, nthreads);
      }
    }
    return;
  }
  const ConvKernels<T>& k = conv_table().get<T>();
  const bool need_w = dw != nullptr || db != nullptr;
  const index_t nch = need_w ? std::min(s.N, kWeightChunks) : s.N;
  const index_t wsize = s.OC * pl.Kg, psize = wsize + s.OC;
  const index_t passes = (dx != nullptr) + (dw != nullptr);
  const int nt = static_cast<int>(
      std::min<index_t>(threads_for(s.N * s.OC * pl.P * std::max<index_t>(pl.Kg * passes, 1), nthreads), nch));
  T* const part = scratch<T>(kSlotPartials, need_w ? nch * psize : 1);
  T* const cols = scratch<T>(kSlotTiles, nt * 2 * pl.col_elems);
  // Padded small-K layers sum dW (and db) lane-wise in vectors over the chunk: (OC, Kg + 1)
  // vectors per thread, then a padded image copy.
  const bool padded_w = pl.padded && dw != nullptr;
  const index_t vec = kMaxVecBytes / static_cast<index_t>(sizeof(T));
  const index_t accsize = padded_w ? s.OC * (pl.Kg + 1) * vec : 0, xpsize = padded_w ? pl.Cg * pl.pad.plane : 0;
  T* const accs = scratch<T>(kSlotWeights, nt * (accsize + xpsize));

  run_items(nch, nt, nthreads, [&](index_t c, index_t t, int inner) {
    T* col = cols + t * 2 * pl.col_elems;
    T* dcol = col + pl.col_elems;
    T* acc = accs + t * (accsize + xpsize);
    T* xp = acc + accsize;
    T* pw = need_w ? part + c * psize : nullptr;
    if (need_w) std::fill(pw, pw + psize, T(0));
    std::fill(acc, acc + accsize, T(0));
    for (index_t n = s.N * c / nch; n < s.N * (c + 1) / nch; ++n) {
      const T* ximg = x + n * s.C * s.H * s.W;
      const T* dyimg = dy + n * s.OC * pl.P;
      T* dximg = dx != nullptr ? dx + n * s.C * s.H * s.W : nullptr;
      if (dximg != nullptr && !pl.direct) std::fill(dximg, dximg + s.C * s.H * s.W, T(0));
      for (index_t g = 0; padded_w && g < s.G; ++g) {
        k.direct_pad(xp, ximg, s, g * pl.Cg, pl.Cg);
        k.direct_dweight(acc + g * pl.OCg * (pl.Kg + 1) * vec, dyimg + g * pl.OCg * pl.P, xp, s, pl.OCg,
                         db != nullptr);
      }
      for (index_t g = 0; g < s.G && (dximg != nullptr || !padded_w); ++g) {
        const T* wg = w + g * pl.OCg * pl.Kg;
        T* pwg = dw != nullptr && !padded_w ? pw + g * pl.OCg * pl.Kg : nullptr;
        T* pbg = db != nullptr && !padded_w ? pw + wsize + g * pl.OCg : nullptr;
        for (index_t oh0 = 0; oh0 < s.OH; oh0 += pl.rows) {
          const index_t nrows = std::min(pl.rows, s.OH - oh0), pt = nrows * s.OW, p0 = oh0 * s.OW;
          const T* dyt = dyimg + g * pl.OCg * pl.P + p0;
          if (pwg != nullptr) {
            // dW_g (OCg, Kg) += dy_g (OCg, pt) @ col^T (pt, Kg); db fused or right after (tile in cache).
            index_t ldb;
            const T* B = tile_columns(k, pl, s, ximg, col, g, oh0, nrows, ldb);
            if (pl.small_k) {
              k.smallk_dweight(pwg, pbg, dyt, pl.P, col, pl.OCg, pl.Kg, pt);
            } else {
              gemm<T>(pl.OCg, pl.Kg, pt, T(1), dyt, pl.P, 1, B, 1, ldb, T(1), pwg, pl.Kg, {}, inner);
              if (pbg != nullptr) k.row_sum(pbg, dyt, pl.P, pl.OCg, pt);
            }
          } else if (pbg != nullptr) {
            k.row_sum(pbg, dyt, pl.P, pl.OCg, pt);
          }
          if (dximg != nullptr) {
            // dcol (Kg, pt) = W_g^T (Kg, OCg) @ dy_g (OCg, pt), then scattered back (col2im).
            if (pl.direct) {
              gemm<T>(pl.Kg, pt, pl.OCg, T(1), wg, 1, pl.Kg, dyt, pl.P, 1, T(0), dximg + g * pl.Cg * pl.P + p0, pl.P,
                      {}, inner);
            } else {
              gemm<T>(pl.Kg, pt, pl.OCg, T(1), wg, 1, pl.Kg, dyt, pl.P, 1, T(0), dcol, pt, {}, inner);
              k.col2im(dximg, dcol, s, g * pl.Cg, pl.Cg, oh0, nrows);
            }
          }
        }
      }
    }
    for (index_t g = 0; padded_w && g < s.G; ++g) {
      k.direct_finish(pw + g * pl.OCg * pl.Kg, db != nullptr ? pw + wsize + g * pl.OCg : nullptr,
                      acc + g * pl.OCg * (pl.Kg + 1) * vec, pl.OCg, pl.Kg);
    }
  });

  if (!need_w) return;
  // Fixed-order reduction of the chunk partials, then added into dw and db.
  reduce_chunks(part, psize, nch, nthreads);
  for (index_t i = 0; dw != nullptr && i < wsize; ++i) dw[i] += part[i];
  for (index_t i = 0; db != nullptr && i < s.OC; ++i) db[i] += part[wsize + i];
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*, const ConvShape&, Activation,
                                    int);
template void conv2d_forward<double>(double*, const double*, const double*, const double*, const ConvShape&,
                                     Activation, int);
template void conv2d_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                     const ConvShape&, int);
template void conv2d_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                      const ConvShape&, int);

}  // namespace gk
