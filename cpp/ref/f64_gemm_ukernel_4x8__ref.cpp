// f64 GEMM micro-kernel: a 4 x 8 tile of C in plain C++ (no intrinsics), the generic ISA.
#define GK_ISA_NS generic
#include "gemm/gemm_impl.h"

GK_DEFINE_GEMM_UKERNEL(f64_gemm_ukernel_4x8__ref, double, 4, 8)
