// The AVX-512 GEMM table entries; the cache blocks come from the core's caches at run
// time (gemm.cpp, gemm_blocking_for: on a 48 KiB L1d / 2 MiB L2 core, the former constants
// mc/kc/nc 512/256/1024 for f32 and 256/256/512 for f64; docs/kernels.md).
#define GK_ISA_NS avx512
#include "gemm/gemm_impl.h"

GK_DECLARE_GEMM_UKERNEL(f32_gemm_ukernel_8x32__avx512, float)
GK_DECLARE_GEMM_UKERNEL(f64_gemm_ukernel_8x16__avx512, double)

namespace gk {
constexpr GemmTable gemm_table_avx512 = {
    GK_ISA_NS::gemm_kernels<float, 8, 32>(&GK_ISA_NS::f32_gemm_ukernel_8x32__avx512),
    GK_ISA_NS::gemm_kernels<double, 8, 16>(&GK_ISA_NS::f64_gemm_ukernel_8x16__avx512),
    "avx512: f32 8x32, f64 8x16"};
}  // namespace gk
