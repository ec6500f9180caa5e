// 2-D pooling over NCHW planes: max (argmax kept for backward), average
// (count_include_pad=True, as PyTorch) and global average.
// Every kernel is parallel over the N*C planes; each plane is computed by one
// thread, so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "gradkit/common.h"
#include "gradkit/isa.h"

namespace gk {

struct PoolShape {
  index_t NC, H, W;  // N*C planes of H x W
  index_t OH, OW;
  index_t KH, KW, SH, SW, PH, PW;
};

// y (NC,OH,OW) = window max of x (NC,H,W) (padding is -inf); idx (NC,OH,OW) is the
// flat index ih*W+iw of the max in its plane. NaN propagates (as PyTorch).
template <class T>
void max_pool2d_forward(T* y, std::int32_t* idx, const T* x, const PoolShape& s, int nthreads = 0);
// dx (NC,H,W) = scatter-add of dy (NC,OH,OW) at idx; dx is overwritten.
// Returns the number of indices outside [0, H*W) (skipped; the caller raises).
template <class T>
index_t max_pool2d_backward(T* dx, const T* dy, const std::int32_t* idx, const PoolShape& s, int nthreads = 0);
// y = window sum / (KH*KW) (padded zeros count).
template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolShape& s, int nthreads = 0);
// dx (overwritten) = each dy / (KH*KW) spread over its window.
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, int nthreads = 0);
// y (NC,) = mean of each plane of x (NC, HW).
template <class T>
void global_avg_pool2d_forward(T* y, const T* x, index_t NC, index_t HW, int nthreads = 0);
// dx (NC, HW) = dy (NC,) / HW broadcast (overwritten).
template <class T>
void global_avg_pool2d_backward(T* dx, const T* dy, index_t NC, index_t HW, int nthreads = 0);

// Per-ISA kernels over planes [0, np) (pointers already offset to the first plane).
template <class T>
struct PoolKernels {
  void (*max_forward)(T* y, std::int32_t* idx, const T* x, const PoolShape& s, index_t np);
  index_t (*max_backward)(T* dx, const T* dy, const std::int32_t* idx, const PoolShape& s, index_t np);
  void (*avg_forward)(T* y, const T* x, const PoolShape& s, index_t np);
  void (*avg_backward)(T* dx, const T* dy, const PoolShape& s, index_t np);
  void (*global_forward)(T* y, const T* x, index_t np, index_t HW);
  void (*global_backward)(T* dx, const T* dy, index_t np, index_t HW);
};

using PoolTable = DtypeTable<PoolKernels>;
GK_DECLARE_DISPATCH(pool, PoolTable)

}  // namespace gk
