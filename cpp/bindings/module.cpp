// The one extension module, gradkit._core. Each area binds its kernels in its own file.
#include "common.h"
#include "gradkit/isa.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "gradkit C++ kernels (internal; use gradkit.ops)";
  gk::init_isa_from_env();  // a bad GRADKIT_ISA fails the import with a clear message
  gk::bind::bind_core(m);
  gk::bind::bind_gemm(m);
  gk::bind::bind_eltwise(m);
  gk::bind::bind_norm(m);
  gk::bind::bind_optim(m);
  gk::bind::bind_conv(m);
  gk::bind::bind_data(m);
  gk::bind::bind_diag(m);
}
