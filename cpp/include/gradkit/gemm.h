// General matrix multiply: C = alpha * op(A) op(B) + beta * C, then an epilogue
// (bias, activation) applied while the tile is in registers.
//
// Transposes and arbitrary strides are expressed through (row stride, column
// stride) pairs: element (i, p) of op(A) is A[i * rsa + p * csa]. Packing
// absorbs them, so NN, NT, TN and non-contiguous views are one code path.
// C is row-major with row stride ldc (column stride 1).
// When beta == 0, C is never read (it may hold NaN).
// Threads split M and N only, never K: results do not depend on the thread count.
#pragma once
#include "gradkit/common.h"

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
