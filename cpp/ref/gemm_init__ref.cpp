// The generic GEMM table entries: plain C++ micro-tiles for any CPU (docs/kernels.md).
#define GK_ISA_NS generic
#include "gradkit/gemm_impl.h"

GK_DECLARE_GEMM_UKERNEL(f32_gemm_ukernel_4x8__ref, float)
GK_DECLARE_GEMM_UKERNEL(f64_gemm_ukernel_4x8__ref, double)

void gk::init_gemm_generic(GemmTable& t) {
  generic::gemm_set_kernels<float, 4, 8>(t.f32, &generic::f32_gemm_ukernel_4x8__ref, 64, 256, 256);
  generic::gemm_set_kernels<double, 4, 8>(t.f64, &generic::f64_gemm_ukernel_4x8__ref, 64, 256, 256);
  t.name = "generic: f32 4x8, f64 4x8";
}
