// The generic GEMM table entries: plain C++ micro-tiles for any CPU (docs/kernels.md).
#define GK_ISA_NS generic
#include "gemm/gemm_impl.h"

GK_DECLARE_GEMM_UKERNEL(f32_gemm_ukernel_4x8__ref, float)
GK_DECLARE_GEMM_UKERNEL(f64_gemm_ukernel_4x8__ref, double)

namespace gk {
constexpr GemmTable gemm_table_generic = {
    GK_ISA_NS::gemm_kernels<float, 4, 8>(&GK_ISA_NS::f32_gemm_ukernel_4x8__ref),
    GK_ISA_NS::gemm_kernels<double, 4, 8>(&GK_ISA_NS::f64_gemm_ukernel_4x8__ref),
    "generic: f32 4x8, f64 4x8"};
}  // namespace gk
