// Normalization kernels of norm_impl.h compiled with the avx512 flags.
#define GK_ISA_NS avx512
#include "../../norm/norm_impl.h"

namespace gk {
void init_norm_avx512(NormTable& t) { avx512::fill_norm_table(t); }
}  // namespace gk
