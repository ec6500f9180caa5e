// Optimizer kernels compiled with AVX2 + FMA (gradkit/optim_impl.h).
#define GK_ISA_NS avx2
#include "gradkit/optim_impl.h"

namespace gk {
void init_optim_avx2(OptimTable& t) { avx2::fill_optim_table(t); }
}  // namespace gk
