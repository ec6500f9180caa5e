// f64 GEMM micro-kernel: an 8 x 16 tile of C (8 rows x 2 zmm, 16 accumulators), AVX-512.
#define GK_ISA_NS avx512
#include "gemm/gemm_impl.h"

GK_DEFINE_GEMM_UKERNEL(f64_gemm_ukernel_8x16__avx512, double, 8, 2)
