// Reference (any CPU) instantiation of the conv kernel templates.
#define GK_ISA_NS generic
#include "conv_impl.h"

namespace gk {

void init_conv_generic(ConvTable& t) {
  t.f32 = generic::conv_kernels<float>();
  t.f64 = generic::conv_kernels<double>();
}

}  // namespace gk
