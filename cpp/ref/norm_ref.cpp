// Reference normalization kernels: the plain loops of norm_impl.h compiled
// without ISA flags (any CPU); the generic dispatch table.
#define GK_ISA_NS generic
#include "../norm/norm_impl.h"

namespace gk {
void init_norm_generic(NormTable& t) { generic::fill_norm_table(t); }
}  // namespace gk
