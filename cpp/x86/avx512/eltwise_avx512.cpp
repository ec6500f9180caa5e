// AVX-512 instantiation of the element-wise kernels (64-byte vectors, masked tails).
#define GK_ISA_NS avx512
#include "../../eltwise/eltwise_impl.h"

namespace gk {
void init_eltwise_avx512(EltwiseTable& t) { avx512::eltwise::fill_table(t); }
}  // namespace gk
