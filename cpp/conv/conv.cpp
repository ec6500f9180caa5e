// Conv2d drivers: tiling, threading, scratch memory; kernels come from conv_table().
#include "gradkit/conv.h"

#include <algorithm>
#include <type_traits>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

const ConvTable& conv_table() {
  static const DispatchTable<ConvTable> t(init_conv_generic, GK_X86_INIT(init_conv_avx2),
                                          GK_X86_INIT(init_conv_avx512));
  return t.get();
}

namespace {

template <class T>
const ConvKernels<T>& kernels() {
  if constexpr (std::is_same_v<T, float>) {
    return conv_table().f32;
  } else {
    return conv_table().f64;
  }
}

// An im2col tile (Kg, rows*OW) is kept below this size so that it stays in L2
// between being written and being packed by the GEMM.
constexpr index_t kColTileBytes = 512 * 1024;
// dW and db are summed over images in this many fixed chunks (any thread count).
constexpr index_t kWeightChunks = 8;

struct Plan {
  index_t Cg, OCg, Kg, P;
  index_t rows;       // output rows per tile
  index_t col_elems;  // one im2col tile
  bool small_k;       // direct kernels vectorised over pixels (no GEMM)
  bool direct;        // 1x1, stride 1, no padding: the input is its own im2col matrix
};

Plan make_plan(const ConvShape& s, index_t elem_bytes) {
  Plan p;
  p.Cg = s.C / s.G;
  p.OCg = s.OC / s.G;
  p.Kg = p.Cg * s.KH * s.KW;
  p.P = s.OH * s.OW;
  p.small_k = p.Kg <= kConvSmallK;
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

// Runs body(item, thread_index, inner_threads) for item in [0, n): items split
// statically over `nt` threads (inner_threads = 1), or serially with the GEMM
// threaded inside (inner_threads = nthreads) when nt == 1.
template <class F>
void run_items(index_t n, int nt, int nthreads, F&& body) {
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const index_t t = omp_get_thread_num(), nth = omp_get_num_threads();
      for (index_t i = n * t / nth; i < n * (t + 1) / nth; ++i) body(i, t, 1);
    }
  } else {
    for (index_t i = 0; i < n; ++i) body(i, 0, nthreads);
  }
}

}  // namespace

// x (N,C,H,W), w (OC,C/G,KH,KW), b (OC,) or null, y (N,OC,OH,OW);
// parallel over images (GEMM threaded inside when there are fewer images than threads).
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, int nthreads) {
  const Plan pl = make_plan(s, sizeof(T));
  if (s.N == 0 || s.OC == 0 || pl.P == 0) return;
  const ConvKernels<T>& k = kernels<T>();
  const int nt = static_cast<int>(std::min<index_t>(threads_for(s.N * s.OC * pl.P * pl.Kg, nthreads), s.N));
  AlignedBuffer<T> scratch(std::max<index_t>(nt * pl.col_elems, 1));
  run_items(s.N, nt, nthreads, [&](index_t n, index_t t, int inner) {
    T* col = scratch.data() + t * pl.col_elems;
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
  const ConvKernels<T>& k = kernels<T>();
  const bool need_w = dw != nullptr || db != nullptr;
  const index_t nch = need_w ? std::min(s.N, kWeightChunks) : s.N;
  const index_t wsize = s.OC * pl.Kg, psize = wsize + s.OC;
  const index_t passes = (dx != nullptr) + (dw != nullptr);
  const int nt = static_cast<int>(
      std::min<index_t>(threads_for(s.N * s.OC * pl.P * std::max<index_t>(pl.Kg * passes, 1), nthreads), nch));
  AlignedBuffer<T> partial(need_w ? nch * psize : 1);
  AlignedBuffer<T> scratch(std::max<index_t>(nt * 2 * pl.col_elems, 1));

  run_items(nch, nt, nthreads, [&](index_t c, index_t t, int inner) {
    T* col = scratch.data() + t * 2 * pl.col_elems;
    T* dcol = col + pl.col_elems;
    T* pw = need_w ? partial.data() + c * psize : nullptr;
    if (need_w) std::fill(pw, pw + psize, T(0));
    for (index_t n = s.N * c / nch; n < s.N * (c + 1) / nch; ++n) {
      const T* ximg = x + n * s.C * s.H * s.W;
      const T* dyimg = dy + n * s.OC * pl.P;
      T* dximg = dx != nullptr ? dx + n * s.C * s.H * s.W : nullptr;
      if (dximg != nullptr && !pl.direct) std::fill(dximg, dximg + s.C * s.H * s.W, T(0));
      for (index_t g = 0; g < s.G; ++g) {
        const T* wg = w + g * pl.OCg * pl.Kg;
        T* pwg = dw != nullptr ? pw + g * pl.OCg * pl.Kg : nullptr;
        T* pbg = db != nullptr ? pw + wsize + g * pl.OCg : nullptr;
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
  });

  if (!need_w) return;
  // Fixed-order reduction of the chunk partials into dw and db (added).
  const T* part = partial.data();
  parallel_for(psize, psize * nch, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      T* dst = i < wsize ? (dw != nullptr ? dw + i : nullptr) : (db != nullptr ? db + (i - wsize) : nullptr);
      if (dst == nullptr) continue;
      T sum = part[i];
      for (index_t c = 1; c < nch; ++c) sum += part[c * psize + i];
      *dst += sum;
    }
  }, nthreads);
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
