// GEMM micro-kernel and packing templates, instantiated once per ISA.
//
// Include only after defining GK_ISA_NS (generic, avx2, avx512): everything
// here lives in gk::GK_ISA_NS so that an AVX-512 instantiation can never be
// merged into the generic path (docs/design.md). The micro-kernel is written on
// simd.h's vectors, whose width follows the flags of the including file:
// AVX-512 (zmm), AVX2 + FMA (ymm), or 16 bytes of plain C++ (generic).
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS before including gemm/gemm_impl.h"
#endif

#if defined(__AVX2__)
#include <immintrin.h>  // transpose_block, the packing's micro-kernel
#endif

#include "gradkit/gemm.h"
#include "gradkit/isa_common.h"
#include "gradkit/simd.h"

namespace gk {
namespace GK_ISA_NS {

// relu(x) = max(0, x) = (0 > x ? 0 : x): NaN propagates (as in PyTorch), one max per vector.
template <class T>
GK_ALWAYS_INLINE simd::Vec<T> relu(simd::Vec<T> x) {
  return simd::max(simd::zero<T>(), x);
}

// The k loop of an MR x (NV * W) tile: acc += a(:, p) b(p, :) for p < kc.
// A_RS / A_CS > 0 are compile-time strides of the packed layout; 0 means
// "use the run-time value".
template <class T, int MR, int NV, int A_RS, int A_CS>
GK_ALWAYS_INLINE void gemm_kloop(simd::Vec<T> (&acc)[MR][NV], index_t kc, const T* GK_RESTRICT a, index_t rs_a_rt,
                                 index_t cs_a_rt, const T* GK_RESTRICT b, index_t rs_b) {
  using V = simd::Vec<T>;
  constexpr int W = simd::kLanes<T>;
  const index_t rs_a = A_RS > 0 ? A_RS : rs_a_rt;
  const index_t cs_a = A_CS > 0 ? A_CS : cs_a_rt;
#pragma GCC unroll 4
  for (index_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) bv[v] = simd::load(b + v * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const V ai = simd::set1(a[i * rs_a]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[i][v] = simd::fmadd(ai, bv[v], acc[i][v]);
    }
    a += cs_a;
    b += rs_b;
  }
}

// One MR x NR micro-kernel (NR = NV * W), the GemmUkernelFn contract of gemm.h.
// The MR and NR loops below have compile-time bounds and are fully unrolled.
template <class T, int MR, int NV>
GK_ALWAYS_INLINE void gemm_ukernel(index_t kc, const T* GK_RESTRICT a, index_t rs_a, index_t cs_a,
                                   const T* GK_RESTRICT b, index_t rs_b, T* GK_RESTRICT c, index_t rs_c, index_t m,
                                   index_t n, const GemmUkernelParams<T>& prm) {
  using V = simd::Vec<T>;
  constexpr int W = simd::kLanes<T>;
  constexpr int NR = NV * W;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = simd::zero<T>();
  }
  // The k loop, in two parts: the C tile is prefetched for the epilogue
  // kPrefetch iterations before the end (rows >= m included: a prefetch never faults).
  // Short K blocks run one loop without it: there the extra loop exit and the
  // prefetches cost more than they save (64^3 in place: ~4% faster; unchanged
  // for 128 <= K blocks, measured on the project machine).
  constexpr index_t kPrefetch = 24;
  constexpr index_t kNoPrefetchK = 64;
  const index_t k1 = kc > kNoPrefetchK ? kc - kPrefetch : kc;
  // Two call sites, always inlined: an out-of-line k loop would keep the
  // accumulators in memory (measured: 3x slower).
  auto kloop = [&](index_t p0, index_t p1) __attribute__((always_inline)) {
    const T* ap = a + p0 * cs_a;
    const T* bp = b + p0 * rs_b;
    if (rs_a == 1 && cs_a == MR) {
      gemm_kloop<T, MR, NV, 1, MR>(acc, p1 - p0, ap, rs_a, cs_a, bp, rs_b);  // packed A
    } else if (cs_a == 1) {
      gemm_kloop<T, MR, NV, 0, 1>(acc, p1 - p0, ap, rs_a, cs_a, bp, rs_b);  // row-major A read in place
    } else if (rs_a == 1) {
      gemm_kloop<T, MR, NV, 1, 0>(acc, p1 - p0, ap, rs_a, cs_a, bp, rs_b);  // column-major A read in place
    } else {
      gemm_kloop<T, MR, NV, 0, 0>(acc, p1 - p0, ap, rs_a, cs_a, bp, rs_b);
    }
  };
  kloop(0, k1);
  if (k1 < kc) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      __builtin_prefetch(c + i * rs_c, 1);
      __builtin_prefetch(c + i * rs_c + NR - 1, 1);
    }
    kloop(k1, kc);
  }

  // Epilogue on the tile in registers: c = act(alpha * acc + beta * c + bias).
  const V valpha = simd::set1(prm.alpha);
  const V vbeta = simd::set1(prm.beta);
  const bool use_beta = prm.beta != T(0);  // beta == 0: C is never read
  const bool use_alpha = prm.alpha != T(1);  // alpha * x == x exactly when alpha == 1
  const bool use_relu = prm.act == Activation::relu;
  const T* bias = prm.bias;
  const bool row_bias = bias != nullptr && prm.bias_per_row;
  const bool col_bias = bias != nullptr && !prm.bias_per_row;
  const int nn = static_cast<int>(min<index_t>(n, NR));
  if (m == MR && nn == NR && !use_beta && bias == nullptr && !use_relu) {
    // The common full tile, c = alpha * acc: one branch, not one per vector.
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) simd::store(c + i * rs_c + v * W, use_alpha ? valpha * acc[i][v] : acc[i][v]);
    }
    return;
  }
  V vbias[NV];
  if (col_bias) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      vbias[v] = nn == NR ? simd::load(bias + v * W) : simd::load_partial(bias + v * W, clamp(nn - v * W, 0, W));
    }
  }
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    T* ci = c + i * rs_c;
    const V vrow = row_bias ? simd::set1(bias[i]) : simd::zero<T>();
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      V r = use_alpha ? valpha * acc[i][v] : acc[i][v];
      const int lanes = clamp(nn - v * W, 0, W);  // valid lanes of this vector
      if (use_beta) r = simd::fmadd(vbeta, nn == NR ? simd::load(ci + v * W) : simd::load_partial(ci + v * W, lanes), r);
      if (row_bias) r = r + vrow;
      if (col_bias) r = r + vbias[v];
      if (use_relu) r = relu<T>(r);
      if (nn == NR || lanes == W) {
        simd::store(ci + v * W, r);
      } else if (lanes > 0) {
        simd::store_partial(ci + v * W, r, lanes);
      }
    }
  }
}

// The packing's micro-kernel: transposes a square L x L block, dst[q * ds + r] = src[r * ss + q]
// (L = 8 floats or 4 doubles, one ymm per row), in AVX shuffles (as XNNPACK's packing kernels;
// simd.h's vectors have no shuffles). Only with AVX2 or better. transpose_rows does the same for
// the last `rows` < L rows of a panel whose height is not a multiple of L (AVX2's MR = 6).
#if defined(__AVX2__)
constexpr int transpose_block_size(float*) { return 8; }
constexpr int transpose_block_size(double*) { return 4; }

// r[i] (row i) becomes column i: on return r[q] holds element q of every row.
GK_ALWAYS_INLINE void transpose8(__m256 (&r)[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 8; h += 4) {
    r[h + 0] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0x44);
    r[h + 1] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0xEE);
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
    t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
  }
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) r[q] = t[q];
}

GK_ALWAYS_INLINE void transpose4(__m256d (&r)[4]) {
  const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
  const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
  r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
  r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
  r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
  r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

GK_ALWAYS_INLINE void transpose_block(const float* src, index_t ss, float* dst, index_t ds) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  transpose8(r);
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) _mm256_storeu_ps(dst + q * ds, r[q]);
}

GK_ALWAYS_INLINE void transpose_block(const double* src, index_t ss, double* dst, index_t ds) {
  __m256d r[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src + i * ss);
  transpose4(r);
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) _mm256_storeu_pd(dst + q * ds, r[q]);
}

// The first `rows` lanes of each transposed row are stored (a mask from the lane indices).
// Where the rows are consecutive (ds == rows) the first L - 1 are stored whole instead, in order,
// the zero lanes past `rows` landing where the next row then goes.
GK_ALWAYS_INLINE void transpose_rows(const float* src, index_t ss, int rows, float* dst, index_t ds) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = i < rows ? _mm256_loadu_ps(src + i * ss) : _mm256_setzero_ps();
  transpose8(r);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const int whole = ds == rows ? 7 : 0;
  for (int q = 0; q < whole; ++q) _mm256_storeu_ps(dst + q * ds, r[q]);
  for (int q = whole; q < 8; ++q) _mm256_maskstore_ps(dst + q * ds, mask, r[q]);
}

GK_ALWAYS_INLINE void transpose_rows(const double* src, index_t ss, int rows, double* dst, index_t ds) {
  __m256d r[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) r[i] = i < rows ? _mm256_loadu_pd(src + i * ss) : _mm256_setzero_pd();
  transpose4(r);
  const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(rows), _mm256_setr_epi64x(0, 1, 2, 3));
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) _mm256_maskstore_pd(dst + q * ds, mask, r[q]);
}
#else
template <class T>
constexpr int transpose_block_size(T*) {
  return 0;
}
template <class T>
void transpose_block(const T*, index_t, T*, index_t) {}
template <class T>
void transpose_rows(const T*, index_t, int, T*, index_t) {}
#endif

// Packs `rows` x k elements, element (r, p) at src[r * rs + p * ks], into
// ceil(rows / R) panels of R x k stored p-major (dst[p * R + r] inside a panel),
// rows beyond `rows` zero-padded. pack_a is this with R = MR over the rows of
// op(A); pack_b is this with R = NR over the columns of op(B).
template <class T, int R>
void gemm_pack_panels(index_t rows, index_t k, const T* GK_RESTRICT src, index_t rs, index_t ks,
                      T* GK_RESTRICT dst) {
  constexpr int L = transpose_block_size(static_cast<T*>(nullptr));
  index_t start = 0;
  if (rs == 1) {
    // The R values of each p are contiguous: a plain copy of the full panels,
    // PB values of p at a time across all panels, so that each source cache
    // line is used up while in L1 (panel by panel, a line of a narrow panel is
    // evicted before the next panel reads its other half when ks is a large
    // power of two: every source line then maps to the same L1 set).
    constexpr index_t PB = 8;
    start = rows / R * R;
    for (index_t p0 = 0; p0 < k; p0 += PB) {
      const index_t p1 = min(k, p0 + PB);
      for (index_t r0 = 0; r0 < start; r0 += R) {
        const T* sp = src + r0;
        T* dp = dst + r0 * k;
        for (index_t p = p0; p < p1; ++p) {
#pragma GCC unroll 64
          for (int r = 0; r < R; ++r) dp[p * R + r] = sp[p * ks + r];
        }
      }
    }
    dst += start * k;
  }
  for (index_t r0 = start; r0 < rows; r0 += R, dst += R * k) {
    const index_t nr = min<index_t>(R, rows - r0);
    const T* sp = src + r0 * rs;
    if (nr == R && ks == 1) {
      // Each row is contiguous along p: transpose, L x L blocks at a time (and the R % L rows left).
      index_t p = 0;
      if constexpr (L > 0) {
        constexpr int R0 = R / L * L;
        for (; p + L <= k; p += L) {
#pragma GCC unroll 8
          for (int b = 0; b < R0; b += L) transpose_block(sp + b * rs + p, rs, dst + p * R + b, R);
          if constexpr (R0 < R) transpose_rows(sp + R0 * rs + p, rs, R - R0, dst + p * R + R0, R);
        }
      }
      for (; p < k; ++p) {
#pragma GCC unroll 64
        for (int r = 0; r < R; ++r) dst[p * R + r] = sp[r * rs + p];
      }
    } else {
      for (index_t p = 0; p < k; ++p) {
        for (index_t r = 0; r < nr; ++r) dst[p * R + r] = sp[r * rs + p * ks];
        for (index_t r = nr; r < R; ++r) dst[p * R + r] = T(0);
      }
    }
  }
}

// GemmPackAFn: the m x k block of op(A) into MR-row micro-panels.
template <class T, int MR>
void gemm_pack_a(index_t m, index_t k, const T* a, index_t rs, index_t cs, T* dst) {
  gemm_pack_panels<T, MR>(m, k, a, rs, cs, dst);
}

// GemmPackBFn: the k x n block of op(B) into NR-column slivers.
template <class T, int NR>
void gemm_pack_b(index_t k, index_t n, const T* b, index_t rs, index_t cs, T* dst) {
  gemm_pack_panels<T, NR>(n, k, b, cs, rs, dst);
}

}  // namespace GK_ISA_NS
}  // namespace gk

namespace gk {
namespace GK_ISA_NS {

// The micro-kernel of an MR x (NV * W) tile as a function of its own (GemmUkernelFn):
// the template above is always inlined, so that its k loop keeps the accumulators in registers.
template <class T, int MR, int NV>
void gemm_ukernel_fn(index_t kc, const T* a, index_t rs_a, index_t cs_a, const T* b, index_t rs_b, T* c,
                     index_t rs_c, index_t m, index_t n, const GemmUkernelParams<T>& p) {
  gemm_ukernel<T, MR, NV>(kc, a, rs_a, cs_a, b, rs_b, c, rs_c, m, n, p);
}

// This ISA's micro-tile for T: MR rows of C by NV vectors of W lanes (docs/kernels.md has the
// reasons): AVX-512 8 x 2 zmm (f32 8x32, f64 8x16: 16 accumulators), AVX2 + FMA 6 x 2 ymm
// (f32 6x16, f64 6x8: 12 accumulators), generic 4 x 8 (2 or 4 vectors of 16 bytes a row).
template <class T>
struct GemmTile {
#if defined(__AVX512F__)
  static constexpr int MR = 8, NV = 2;
#elif defined(__AVX2__) && defined(__FMA__)
  static constexpr int MR = 6, NV = 2;
#else
  static constexpr int MR = 4, NV = 8 / simd::kLanes<T>;
#endif
};

// This ISA's table entry for T: the micro-kernel and the packing routines for its MR x NR.
// The cache blocks are derived from the core's caches at run time (gemm.cpp, gemm_blocking_for).
template <class T>
constexpr GemmKernels<T> gemm_kernels() {
  constexpr int MR = GemmTile<T>::MR, NR = GemmTile<T>::NV * simd::kLanes<T>;
  return {&gemm_ukernel_fn<T, MR, GemmTile<T>::NV>, &gemm_pack_a<T, MR>, &gemm_pack_b<T, NR>, MR, NR, 0, 0, 0};
}

}  // namespace GK_ISA_NS
}  // namespace gk
