// Simple row-parallel GEMM (correct for every stride; replaced by the blocked driver).
#include "gradkit/gemm.h"

#include <algorithm>
#include <vector>

#include "gradkit/parallel.h"

namespace gk {

// A (M,K) strided, B (K,N) strided, C (M,N) row stride ldc; parallel over rows of C.
template <class T>
void gemm(index_t M, index_t N, index_t K, T alpha, const T* A, index_t rsa, index_t csa, const T* B, index_t rsb,
          index_t csb, T beta, T* C, index_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  if (M <= 0 || N <= 0) return;
  parallel_for(M, M * N * std::max<index_t>(K, 1), [&](index_t i0, index_t i1) {
    std::vector<T> acc(static_cast<size_t>(N));
    for (index_t i = i0; i < i1; ++i) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (index_t p = 0; p < K; ++p) {
        const T a = A[i * rsa + p * csa];
        for (index_t j = 0; j < N; ++j) acc[j] += a * B[p * rsb + j * csb];
      }
      T* c = C + i * ldc;
      for (index_t j = 0; j < N; ++j) {
        T v = alpha * acc[j];
        if (beta != T(0)) v += beta * c[j];
        if (ep.bias != nullptr) v += ep.bias_per_row ? ep.bias[i] : ep.bias[j];
        if (ep.act == Activation::relu) v = v > T(0) ? v : T(0);
        c[j] = v;
      }
    }
  }, nthreads);
}

template void gemm<float>(index_t, index_t, index_t, float, const float*, index_t, index_t, const float*, index_t,
                          index_t, float, float*, index_t, const GemmEpilogue<float>&, int);
template void gemm<double>(index_t, index_t, index_t, double, const double*, index_t, index_t, const double*, index_t,
                           index_t, double, double*, index_t, const GemmEpilogue<double>&, int);

}  // namespace gk
