// The generic (any CPU) instantiation of the element-wise kernels: 16-byte
// vectors (SSE2 on x86-64, NEON on aarch64), no ISA flags.
#define GK_ISA_NS generic
#include "eltwise_impl.h"

namespace gk {
void init_eltwise_generic(EltwiseTable& t) { generic::eltwise::fill_table(t); }
}  // namespace gk
