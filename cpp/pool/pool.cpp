// Pooling drivers: split the N*C planes over threads; kernels come from pool_table().
#include "gradkit/pool.h"

#include <atomic>
#include <type_traits>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(pool, PoolTable)

// f(p, np) on runs of np planes from plane p, the NC planes split over threads; `work`: one
// plane's cost (elements read and written).
template <class F>
void for_planes(index_t NC, index_t work, int nthreads, F&& f) {
  parallel_for(NC, NC * work, [&](index_t p0, index_t p1) { f(p0, p1 - p0); }, nthreads);
}

// x (NC,H,W) -> y, idx (NC,OH,OW).
template <class T>
void max_pool2d_forward(T* y, std::int32_t* idx, const T* x, const PoolShape& s, int nthreads) {
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  for_planes(s.NC, ip + op * s.KH * s.KW, nthreads,
             [&](index_t p, index_t np) { pool_table().get<T>().max_forward(y + p * op, idx + p * op, x + p * ip, s, np); });
}

// dy, idx (NC,OH,OW) -> dx (NC,H,W).
template <class T>
index_t max_pool2d_backward(T* dx, const T* dy, const std::int32_t* idx, const PoolShape& s, int nthreads) {
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  std::atomic<index_t> bad{0};
  for_planes(s.NC, ip + op, nthreads, [&](index_t p, index_t np) {
    bad += pool_table().get<T>().max_backward(dx + p * ip, dy + p * op, idx + p * op, s, np);
  });
  return bad.load();
}

// x (NC,H,W) -> y (NC,OH,OW).
template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolShape& s, int nthreads) {
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  for_planes(s.NC, ip + op * s.KH * s.KW, nthreads,
             [&](index_t p, index_t np) { pool_table().get<T>().avg_forward(y + p * op, x + p * ip, s, np); });
}

// dy (NC,OH,OW) -> dx (NC,H,W).
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, int nthreads) {
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  for_planes(s.NC, ip + op * s.KH * s.KW, nthreads,
             [&](index_t p, index_t np) { pool_table().get<T>().avg_backward(dx + p * ip, dy + p * op, s, np); });
}

// x (NC, HW) -> y (NC,).
template <class T>
void global_avg_pool2d_forward(T* y, const T* x, index_t NC, index_t HW, int nthreads) {
  for_planes(NC, HW, nthreads, [&](index_t p, index_t np) { pool_table().get<T>().global_forward(y + p, x + p * HW, np, HW); });
}

// dy (NC,) -> dx (NC, HW).
template <class T>
void global_avg_pool2d_backward(T* dx, const T* dy, index_t NC, index_t HW, int nthreads) {
  for_planes(NC, HW, nthreads,
             [&](index_t p, index_t np) { pool_table().get<T>().global_backward(dx + p * HW, dy + p, np, HW); });
}

#define GK_INSTANTIATE_POOL(T)                                                                          \
  template void max_pool2d_forward<T>(T*, std::int32_t*, const T*, const PoolShape&, int);             \
  template index_t max_pool2d_backward<T>(T*, const T*, const std::int32_t*, const PoolShape&, int);      \
  template void avg_pool2d_forward<T>(T*, const T*, const PoolShape&, int);                            \
  template void avg_pool2d_backward<T>(T*, const T*, const PoolShape&, int);                           \
  template void global_avg_pool2d_forward<T>(T*, const T*, index_t, index_t, int);                     \
  template void global_avg_pool2d_backward<T>(T*, const T*, index_t, index_t, int);
GK_INSTANTIATE_POOL(float)
GK_INSTANTIATE_POOL(double)
#undef GK_INSTANTIATE_POOL

}  // namespace gk
