// avx512 instantiation of the pooling kernel templates.
#define GK_ISA_NS avx512
#include "../../conv/pool_impl.h"

namespace gk {

void init_pool_avx512(PoolTable& t) {
  t.f32 = avx512::pool_kernels<float>();
  t.f64 = avx512::pool_kernels<double>();
}

}  // namespace gk
