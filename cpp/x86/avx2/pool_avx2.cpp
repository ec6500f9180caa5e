// avx2 instantiation of the pooling kernel templates.
#define GK_ISA_NS avx2
#include "../../conv/pool_impl.h"

namespace gk {

void init_pool_avx2(PoolTable& t) {
  t.f32 = avx2::pool_kernels<float>();
  t.f64 = avx2::pool_kernels<double>();
}

}  // namespace gk
