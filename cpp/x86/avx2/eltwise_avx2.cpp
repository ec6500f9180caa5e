// AVX2 + FMA instantiation of the element-wise kernels (32-byte vectors).
#define GK_ISA_NS avx2
#include "../../eltwise/eltwise_impl.h"

namespace gk {
void init_eltwise_avx2(EltwiseTable& t) { avx2::eltwise::fill_table(t); }
}  // namespace gk
