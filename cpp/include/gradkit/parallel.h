// Threading: one process-wide thread count, OpenMP parallel regions that are
// skipped for small work, and work handed out in parts as threads come free
// (results never depend on the parts).
#pragma once
#include <omp.h>

#include <algorithm>

#include "gradkit/common.h"

namespace gk {

// Below this many elements of work (or similar cost units) a kernel runs serially.
constexpr index_t kMinParallelWork = 32768;

int get_num_threads();
void set_num_threads(int n);  // n >= 1; in a child created by fork() only 1 (see parallel.cpp)

// Number of threads to use for `work` units when the caller asks for `nthreads`
// (0 = the global setting): 1 inside another parallel region or for small work.
inline int threads_for(index_t work, int nthreads = 0) {
  if (nthreads <= 0) nthreads = get_num_threads();
  if (nthreads <= 1 || work < kMinParallelWork || omp_in_parallel()) return 1;
  return nthreads;
}

// Calls f(begin, end) once for each of kPiecesPerThread * threads contiguous, nearly equal
// parts of [0, n), handed out to the threads as they come free: on a shared machine a
// stalled core then holds up one part, not half the work. Callers keep results independent
// of the parts (f writes each index's own outputs, and reductions go through fixed chunks),
// so the bits never depend on the split. `work` is the total cost used to decide whether
// to go parallel at all.
constexpr index_t kPiecesPerThread = 4;

template <class F>
void parallel_for(index_t n, index_t work, F&& f, int nthreads = 0) {
  if (n <= 0) return;
  const int nt = static_cast<int>(std::min<index_t>(threads_for(work, nthreads), n));
  if (nt == 1) {
    f(index_t{0}, n);
    return;
  }
  const index_t pieces = std::min<index_t>(n, nt * kPiecesPerThread);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (index_t p = 0; p < pieces; ++p) f(n * p / pieces, n * (p + 1) / pieces);
}

}  // namespace gk
