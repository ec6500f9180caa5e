// f32 GEMM micro-kernel: a 6 x 16 tile of C (6 rows x 2 ymm, 12 accumulators), AVX2 + FMA.
#define GK_ISA_NS avx2
#include "gemm/gemm_impl.h"

GK_DEFINE_GEMM_UKERNEL(f32_gemm_ukernel_6x16__avx2, float, 6, 2)
