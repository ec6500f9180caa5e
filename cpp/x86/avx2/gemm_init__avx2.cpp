// The AVX2 GEMM table entries; the cache blocks come from the core's caches at run time
// (gemm.cpp, gemm_blocking_for; docs/kernels.md).
#define GK_ISA_NS avx2
#include "gemm/gemm_impl.h"

GK_DECLARE_GEMM_UKERNEL(f32_gemm_ukernel_6x16__avx2, float)
GK_DECLARE_GEMM_UKERNEL(f64_gemm_ukernel_6x8__avx2, double)

namespace gk {
constexpr GemmTable gemm_table_avx2 = {
    GK_ISA_NS::gemm_kernels<float, 6, 16>(&GK_ISA_NS::f32_gemm_ukernel_6x16__avx2),
    GK_ISA_NS::gemm_kernels<double, 6, 8>(&GK_ISA_NS::f64_gemm_ukernel_6x8__avx2),
    "avx2: f32 6x16, f64 6x8"};
}  // namespace gk
