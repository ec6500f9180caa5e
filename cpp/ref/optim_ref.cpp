// Reference optimizer kernels: the portable instantiation of gradkit/optim_impl.h.
#define GK_ISA_NS generic
#include "gradkit/optim_impl.h"

namespace gk {
void init_optim_generic(OptimTable& t) { generic::fill_optim_table(t); }
}  // namespace gk
