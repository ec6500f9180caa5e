// Reference (any CPU) instantiation of the pooling kernel templates.
#define GK_ISA_NS generic
#include "pool_impl.h"

namespace gk {

void init_pool_generic(PoolTable& t) {
  t.f32 = generic::pool_kernels<float>();
  t.f64 = generic::pool_kernels<double>();
}

}  // namespace gk
