// Optimizer kernels compiled with AVX-512 (gradkit/optim_impl.h).
#define GK_ISA_NS avx512
#include "gradkit/optim_impl.h"

namespace gk {
void init_optim_avx512(OptimTable& t) { avx512::fill_optim_table(t); }
}  // namespace gk
