// Multi-tensor apply: one parallel region per call over all tensors together.
#include "gradkit/optim.h"

#include <algorithm>
#include <cmath>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(optim, OptimTable)

namespace {

// Work is handed out in blocks of this many elements of one tensor: pieces
// start at a multiple of kBlock inside their tensor, so every element is
// processed by the same code path (vector body or tail) whatever the thread
// count, and results are bit-identical for 1 or N threads.
constexpr index_t kBlock = 64;
// Threads take chunks of this many blocks (64K elements) one at a time.
constexpr index_t kChunkBlocks = 1024;
// Gradient norms sum fixed chunks of each tensor, then the chunk sums in order.
constexpr index_t kNormChunk = 16384;

// Calls f(c) for every c in [0, nchunks) on up to `nthreads` threads (0 = the
// global setting; serial for less than kMinParallelWork of `work`). Chunks are
// handed out dynamically, so a thread descheduled on a busy machine does not
// hold the others up; no result depends on which thread runs a chunk.
template <class F>
void dynamic_for(index_t nchunks, index_t work, int nthreads, F&& f) {
  const int nt = static_cast<int>(std::min<index_t>(threads_for(work, nthreads), nchunks));
  if (nt <= 1) {
    for (index_t c = 0; c < nchunks; ++c) f(c);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (index_t c = 0; c < nchunks; ++c) f(c);
}

// Splits the blocks of all tensors (taken as one concatenation) into chunks of
// kChunkBlocks and calls f(i, begin, end) for each part of tensor i in a chunk.
template <class F>
void for_each_piece(const std::vector<index_t>& n, int nthreads, F&& f) {
  std::vector<index_t> boff(n.size() + 1, 0);  // blocks before tensor i
  index_t total = 0;
  for (size_t i = 0; i < n.size(); ++i) {
    boff[i + 1] = boff[i] + ceil_div(n[i], kBlock);
    total += n[i];
  }
  const index_t nblocks = boff.back();
  dynamic_for(ceil_div(nblocks, kChunkBlocks), total, nthreads, [&](index_t c) {
    const index_t b0 = c * kChunkBlocks, b1 = std::min(b0 + kChunkBlocks, nblocks);
    // The tensor holding block b0 (upper_bound skips empty tensors).
    size_t i = static_cast<size_t>(std::upper_bound(boff.begin(), boff.end(), b0) - boff.begin()) - 1;
    for (; i < n.size() && boff[i] < b1; ++i) {
      const index_t lo = (std::max(b0, boff[i]) - boff[i]) * kBlock;
      const index_t hi = std::min((std::min(b1, boff[i + 1]) - boff[i]) * kBlock, n[i]);
      if (lo < hi) f(i, lo, hi);
    }
  });
}

}  // namespace

// Per tensor i: p (n[i]), g (n[i]), state slots (n[i] or nullptr); parallel over
// the concatenation of all tensors, blocks of kBlock elements.
template <class T>
void optim_step(const TensorList<T>& t, int nthreads) {
  const size_t count = t.size();
  if (count == 0) return;
  std::vector<OptimStepScalars> sc(count);
  std::vector<OptimKernel<T>> kernel(count);
  const auto& k = optim_table().get<T>();
  for (size_t i = 0; i < count; ++i) {
    sc[i] = optim_step_scalars(*t.hyper[i], t.step[i]);
    kernel[i] = k.step[static_cast<int>(t.hyper[i]->kind)];
  }
  for_each_piece(t.n, nthreads, [&](size_t i, index_t lo, index_t hi) {
    auto at = [lo](auto* ptr) { return ptr == nullptr ? ptr : ptr + lo; };
    kernel[i](*t.hyper[i], sc[i], t.param[i] + lo, t.grad[i] + lo, at(t.state[0][i]), at(t.state[1][i]),
              at(t.state[2][i]), hi - lo);
  });
}

// x[i] (n[i]); chunks of kNormChunk per tensor, parallel over chunks, summed in order.
template <class T>
double grad_norm_partial(const std::vector<const T*>& x, const std::vector<index_t>& n, bool norm_inf,
                         int nthreads) {
  struct Chunk {
    const T* p;
    index_t len;
  };
  std::vector<Chunk> chunks;
  index_t total = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    for (index_t b = 0; b < n[i]; b += kNormChunk) chunks.push_back({x[i] + b, std::min(kNormChunk, n[i] - b)});
    total += n[i];
  }
  std::vector<double> part(chunks.size());
  const auto& k = optim_table().get<T>();
  dynamic_for(static_cast<index_t>(chunks.size()), total, nthreads, [&](index_t c) {
    part[c] = norm_inf ? k.absmax(chunks[c].p, chunks[c].len) : k.sumsq(chunks[c].p, chunks[c].len);
  });
  double acc = 0;
  for (double v : part) {
    if (norm_inf) acc = (std::isnan(v) || std::isnan(acc)) ? NAN : std::max(acc, v);
    else acc += v;
  }
  return acc;
}

template <class T>
void scale_tensors(const std::vector<T*>& x, const std::vector<index_t>& n, T c, int nthreads) {
  const auto scale = optim_table().get<T>().scale;
  for_each_piece(n, nthreads, [&](size_t i, index_t lo, index_t hi) { scale(x[i] + lo, c, hi - lo); });
}

template void optim_step<float>(const TensorList<float>&, int);
template void optim_step<double>(const TensorList<double>&, int);
template double grad_norm_partial<float>(const std::vector<const float*>&, const std::vector<index_t>&, bool, int);
template double grad_norm_partial<double>(const std::vector<const double*>&, const std::vector<index_t>&, bool, int);
template void scale_tensors<float>(const std::vector<float*>&, const std::vector<index_t>&, float, int);
template void scale_tensors<double>(const std::vector<double*>&, const std::vector<index_t>&, double, int);

}  // namespace gk
