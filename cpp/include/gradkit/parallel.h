// Threading: one process-wide thread count, OpenMP parallel regions that are
// skipped for small work, and a static split so results never depend on
// scheduling.
#pragma once
#include <omp.h>

#include <algorithm>

#include "gradkit/common.h"

namespace gk {

// Below this many elements of work (or similar cost units) a kernel runs serially.
constexpr index_t kMinParallelWork = 32768;

int get_num_threads();
void set_num_threads(int n);  // n >= 1

// Number of threads to use for `work` units when the caller asks for `nthreads`
// (0 = the global setting): 1 inside another parallel region or for small work.
inline int threads_for(index_t work, int nthreads = 0) {
  if (nthreads <= 0) nthreads = get_num_threads();
  if (nthreads <= 1 || work < kMinParallelWork || omp_in_parallel()) return 1;
  return nthreads;
}

// Calls f(begin, end) on contiguous, nearly equal parts of [0, n), one per
// thread (static split: thread t always gets the same part). `work` is the
// total cost used to decide whether to go parallel at all.
template <class F>
void parallel_for(index_t n, index_t work, F&& f, int nthreads = 0) {
  if (n <= 0) return;
  const int nt = static_cast<int>(std::min<index_t>(threads_for(work, nthreads), n));
  if (nt == 1) {
    f(index_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num();
    const index_t nth = omp_get_num_threads();
    const index_t begin = n * t / nth;
    const index_t end = n * (t + 1) / nth;
    if (begin < end) f(begin, end);
  }
}

}  // namespace gk
