// f32 GEMM micro-kernel: an 8 x 32 tile of C (8 rows x 2 zmm, 16 accumulators), AVX-512.
#define GK_ISA_NS avx512
#include "gemm/gemm_impl.h"

GK_DEFINE_GEMM_UKERNEL(f32_gemm_ukernel_8x32__avx512, float, 8, 2)
