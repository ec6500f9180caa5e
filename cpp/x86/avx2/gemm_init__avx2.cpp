// The AVX2 GEMM table entries. Block sizes keep the kc x nc block of B
// (512 KiB) within a typical AVX2 core's L2 (docs/kernels.md).
#define GK_ISA_NS avx2
#include "gradkit/gemm_impl.h"

GK_DECLARE_GEMM_UKERNEL(f32_gemm_ukernel_6x16__avx2, float)
GK_DECLARE_GEMM_UKERNEL(f64_gemm_ukernel_6x8__avx2, double)

void gk::init_gemm_avx2(GemmTable& t) {
  avx2::gemm_set_kernels<float, 6, 16>(t.f32, &avx2::f32_gemm_ukernel_6x16__avx2, 240, 256, 512);
  avx2::gemm_set_kernels<double, 6, 8>(t.f64, &avx2::f64_gemm_ukernel_6x8__avx2, 120, 256, 256);
  t.name = "avx2: f32 6x16, f64 6x8";
}
