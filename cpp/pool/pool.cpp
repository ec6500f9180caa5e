// Pooling drivers: split the N*C planes over threads; kernels come from pool_table().
#include "gradkit/pool.h"

#include <atomic>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(pool, PoolTable)

// x (NC,H,W) -> y, idx (NC,OH,OW); parallel over planes.
template <class T>
void max_pool2d_forward(T* y, std::int32_t* idx, const T* x, const PoolShape& s, int nthreads) {
  const auto& k = pool_table().get<T>();
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  parallel_for(s.NC, s.NC * (ip + op * s.KH * s.KW), [&](index_t p0, index_t p1) {
    k.max_forward(y + p0 * op, idx + p0 * op, x + p0 * ip, s, p1 - p0);
  }, nthreads);
}

// dy, idx (NC,OH,OW) -> dx (NC,H,W); parallel over planes.
template <class T>
index_t max_pool2d_backward(T* dx, const T* dy, const std::int32_t* idx, const PoolShape& s, int nthreads) {
  const auto& k = pool_table().get<T>();
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  std::atomic<index_t> bad{0};
  parallel_for(s.NC, s.NC * (ip + op), [&](index_t p0, index_t p1) {
    bad += k.max_backward(dx + p0 * ip, dy + p0 * op, idx + p0 * op, s, p1 - p0);
  }, nthreads);
  return bad.load();
}

// x (NC,H,W) -> y (NC,OH,OW); parallel over planes.
template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolShape& s, int nthreads) {
  const auto& k = pool_table().get<T>();
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  parallel_for(s.NC, s.NC * (ip + op * s.KH * s.KW), [&](index_t p0, index_t p1) {
    k.avg_forward(y + p0 * op, x + p0 * ip, s, p1 - p0);
  }, nthreads);
}

// dy (NC,OH,OW) -> dx (NC,H,W); parallel over planes.
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, int nthreads) {
  const auto& k = pool_table().get<T>();
  const index_t op = s.OH * s.OW, ip = s.H * s.W;
  parallel_for(s.NC, s.NC * (ip + op * s.KH * s.KW), [&](index_t p0, index_t p1) {
    k.avg_backward(dx + p0 * ip, dy + p0 * op, s, p1 - p0);
  }, nthreads);
}

// x (NC, HW) -> y (NC,); parallel over planes.
template <class T>
void global_avg_pool2d_forward(T* y, const T* x, index_t NC, index_t HW, int nthreads) {
  const auto& k = pool_table().get<T>();
  parallel_for(NC, NC * HW, [&](index_t p0, index_t p1) { k.global_forward(y + p0, x + p0 * HW, p1 - p0, HW); },
               nthreads);
}

// dy (NC,) -> dx (NC, HW); parallel over planes.
template <class T>
void global_avg_pool2d_backward(T* dx, const T* dy, index_t NC, index_t HW, int nthreads) {
  const auto& k = pool_table().get<T>();
  parallel_for(NC, NC * HW, [&](index_t p0, index_t p1) { k.global_backward(dx + p0 * HW, dy + p0, p1 - p0, HW); },
               nthreads);
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
