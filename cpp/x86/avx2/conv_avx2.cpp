// avx2 instantiation of the conv kernel templates (this folder's flags give the vector width).
#define GK_ISA_NS avx2
#include "../../conv/conv_impl.h"

namespace gk {

void init_conv_avx2(ConvTable& t) {
  t.f32 = avx2::conv_kernels<float>();
  t.f64 = avx2::conv_kernels<double>();
}

}  // namespace gk
