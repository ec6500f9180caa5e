// Normalization kernels of norm_impl.h compiled with the avx2 flags.
#define GK_ISA_NS avx2
#include "../../norm/norm_impl.h"

namespace gk {
void init_norm_avx2(NormTable& t) { avx2::fill_norm_table(t); }
}  // namespace gk
