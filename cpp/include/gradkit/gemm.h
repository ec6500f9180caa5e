// General matrix multiply: C = alpha * op(A) op(B) + beta * C, then an epilogue
// (bias, activation) applied while the tile is in registers.
//
// Transposes and arbitrary strides are expressed through (row stride, column
// stride) pairs: element (i, p) of op(A) is A[i * rsa + p * csa]. Packing
// absorbs them, so NN, NT, TN and non-contiguous views are one code path.
// C is row-major with row stride ldc (column stride 1).
// When beta == 0, C is never read (it may hold NaN).
// Threads split M and N; long, thin products (small C, K >= 8192) are cut along K into
// fixed chunks summed in a fixed order. Either way results do not depend on the thread count.
#pragma once
#include "gradkit/common.h"
#include "gradkit/cpu_cache.h"
#include "gradkit/isa.h"

namespace gk {

enum class Activation : int { none = 0, relu = 1 };

template <class T>
struct GemmEpilogue {
  const T* bias = nullptr;    // added after alpha * AB + beta * C, before the activation
  bool bias_per_row = false;  // bias[i] for row i (conv: one per output channel); else bias[j]
  Activation act = Activation::none;
};

// nthreads: 0 = the global setting; a caller already inside its own parallel
// region passes 1.
template <class T>
void gemm(index_t M, index_t N, index_t K, T alpha, const T* A, index_t rsa, index_t csa, const T* B, index_t rsb,
          index_t csb, T beta, T* C, index_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

}  // namespace gk

// ---------------------------------------------------------------------------
// Micro-kernels and the dispatch table (the contract is in docs/kernels.md).

namespace gk {

// What a micro-kernel applies to its tile once the k loop is done:
// c = act(alpha * acc + beta * c + bias). When beta == 0, c is never read.
// bias points at the tile's first row (bias_per_row) or first column.
template <class T>
struct GemmUkernelParams {
  T alpha = T(1);
  T beta = T(0);
  const T* bias = nullptr;
  bool bias_per_row = false;
  Activation act = Activation::none;
};

// Computes one MR x NR tile and stores its top-left m x n corner (m <= MR, n <= NR):
//   a: element (i, p) of the MR x kc micro-panel at a[i * rs_a + p * cs_a]
//      (packed: rs_a = 1, cs_a = MR, rows >= m zero-padded; rows >= m are never read
//      unless packed);
//   b: element (p, j) of the kc x NR sliver at b[p * rs_b + j] (packed: rs_b = NR,
//      zero-padded; unpacked slivers must have NR readable columns);
//   c: element (i, j) at c[i * rs_c + j].
template <class T>
using GemmUkernelFn = void (*)(index_t kc, const T* a, index_t rs_a, index_t cs_a, const T* b, index_t rs_b, T* c,
                               index_t rs_c, index_t m, index_t n, const GemmUkernelParams<T>& p);

// Packs the m x k block of op(A) (element (i, p) at a[i * rs + p * cs]) into
// ceil(m / MR) micro-panels of MR x k, each stored k-major (MR values per p),
// rows beyond m zero-padded.
template <class T>
using GemmPackAFn = void (*)(index_t m, index_t k, const T* a, index_t rs, index_t cs, T* dst);
// Packs the k x n block of op(B) (element (p, j) at b[p * rs + j * cs]) into
// ceil(n / NR) slivers of k x NR, each stored row by row (NR values per p),
// columns beyond n zero-padded.
template <class T>
using GemmPackBFn = void (*)(index_t k, index_t n, const T* b, index_t rs, index_t cs, T* dst);

// The order of the two loops around the micro-kernel in the packed path (gemm.cpp), and so which
// operand stays in L1: the MR x kc micro-panel of A while the kc x NR slivers of B stream from the
// packed B block in L2 (ir outside jr), or BLIS's, the kc x NR sliver of B while the micro-panels of A
// stream from the packed A block in L2 (jr outside ir). gemm_blocking_for picks one from the caches.
enum class GemmOrder : int { a_panel_in_l1 = 0, b_sliver_in_l1 = 1 };

// One ISA's kernels and block sizes for one dtype (BLIS context).
template <class T>
struct GemmKernels {
  GemmUkernelFn<T> ukernel = nullptr;
  GemmPackAFn<T> pack_a = nullptr;
  GemmPackBFn<T> pack_b = nullptr;
  index_t mr = 0, nr = 0;          // micro-tile
  index_t mc = 0, kc = 0, nc = 0;  // cache blocks (gemm_blocking_for): packed A, k depth (kc_max), packed B
  GemmOrder order = GemmOrder::a_panel_in_l1;  // of the packed path's macro-kernel (gemm_blocking_for)
};

using GemmTable = DtypeTable<GemmKernels>;
GK_DECLARE_DISPATCH(gemm, GemmTable)

// A table's cache blocks on a core with these caches (gemm.cpp: BLIS's analytical model),
// and the sizes they came from. For show_config and tests.
struct GemmBlocking {
  index_t mr, nr, mc, kc, nc;
  GemmOrder order;
  index_t l1d_bytes, l2_bytes, l3_bytes;  // 0 when unknown
};
GemmBlocking gemm_blocking_for(index_t mr, index_t nr, index_t elem_bytes, const CacheSizes& cs);
// The blocking `isa`'s float32 (or float64) kernels get on this core (cache_sizes()).
GemmBlocking gemm_blocking(Isa isa, bool f64);

}  // namespace gk
