// Version, build configuration, ISA selection, threads and the random generator.
#include <cstdint>
#include <optional>
#include <string>

#include "common.h"
#include "gradkit/conv.h"
#include "gradkit/cpu_cache.h"
#include "gradkit/eltwise.h"
#include "gradkit/gemm.h"
#include "gradkit/isa.h"
#include "gradkit/norm.h"
#include "gradkit/optim.h"
#include "gradkit/pool.h"
#include "gradkit/parallel.h"
#include "gradkit/rng.h"

namespace gk::bind {

namespace {

// Fills `out` in place with one of the rng.h fill kernels (uniform or normal).
template <class T, void (*Fill)(T*, index_t, T, T)>
void fill(const py::handle& obj, double a, double b) {
  auto arr = out<T>(obj, "out");
  T* p = arr.mutable_data();
  const index_t n = arr.size();
  py::gil_scoped_release release;
  Fill(p, n, static_cast<T>(a), static_cast<T>(b));
}

}  // namespace

void bind_core(py::module_& m) {
  m.attr("__version__") = VERSION_INFO;
  py::dict build;
  build["compiler"] = GK_COMPILER;
  build["flags"] = GK_FLAGS;
  build["avx2_flags"] = GK_AVX2_FLAGS;
  build["avx512_flags"] = GK_AVX512_FLAGS;
#if defined(GK_X86)
  build["x86_kernels"] = true;
#else
  build["x86_kernels"] = false;
#endif
  m.attr("build_info") = build;

  m.def("get_isa", [] { return std::string(isa_name(current_isa())); }, "The ISA the kernels dispatch to now.");
  m.def(
      "set_isa", [](const std::string& name) { set_isa(parse_isa(name)); }, py::arg("name"),
      "Switch every dispatch table to `name` (tests use this to cover each ISA).");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> out;
        for (Isa isa : supported_isas()) out.emplace_back(isa_name(isa));
        return out;
      },
      "The ISAs this CPU and build can run, from generic up.");
  cache_sizes();  // read at import: a bad GRADKIT_L*_CACHE_BYTES fails it with a clear message
  m.def(
      "gemm_blocking",
      [](const std::optional<std::string>& isa, const std::string& dtype) {
        if (dtype != "float32" && dtype != "float64") {
          throw py::value_error("gemm_blocking: dtype: expected 'float32' or 'float64', got '" + dtype + "'");
        }
        const GemmBlocking b = gemm_blocking(isa ? parse_isa(*isa) : current_isa(), dtype == "float64");
        py::dict out;
        out["mr"] = b.mr;
        out["nr"] = b.nr;
        out["mc"] = b.mc;
        out["kc"] = b.kc;
        out["nc"] = b.nc;
        out["order"] = b.order == GemmOrder::b_sliver_in_l1 ? "b_sliver_in_l1" : "a_panel_in_l1";
        out["l1d_bytes"] = b.l1d_bytes;
        out["l2_bytes"] = b.l2_bytes;
        out["l3_bytes"] = b.l3_bytes;
        return out;
      },
      py::arg("isa") = py::none(), py::arg("dtype") = "float32",
      "The GEMM blocking of `isa`'s kernels (default: the current ISA) for dtype, derived from this core's "
      "caches (l3_bytes: one core's share; 0 = unknown), and the packed path's loop order: which operand stays "
      "in L1 ('a_panel_in_l1' or 'b_sliver_in_l1', BLIS's). GRADKIT_L1_CACHE_BYTES, GRADKIT_L2_CACHE_BYTES and "
      "GRADKIT_L3_CACHE_BYTES override the sizes.");
  m.def(
      "kernel_isas",
      [] {
        py::dict out;
        out["gemm"] = isa_name(gemm_table_isa());
        out["conv"] = isa_name(conv_table_isa());
        out["pool"] = isa_name(pool_table_isa());
        out["eltwise"] = isa_name(eltwise_table_isa());
        out["norm"] = isa_name(norm_table_isa());
        out["optim"] = isa_name(optim_table_isa());
        return out;
      },
      "The ISA of the dispatch table each kernel area uses now.");

  m.def("get_num_threads", &get_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) value_error("n", "an integer >= 1", std::to_string(n));
        set_num_threads(n);
      },
      py::arg("n"));

  m.def(
      "manual_seed", [](std::uint64_t seed) { manual_seed(seed); }, py::arg("seed"));
  m.def("rng_state", [] {
    const RngState s = rng_state();
    return py::make_tuple(s.seed, s.offset);
  });
  m.def(
      "set_rng_state", [](std::uint64_t seed, std::uint64_t offset) { set_rng_state({seed, offset}); },
      py::arg("seed"), py::arg("offset"));
  m.def(
      "rng_uniform",
      [](const py::handle& out, double low, double high) {
        dispatch_float(out, "out", [&](auto t) {
          using T = decltype(t);
          fill<T, rng_uniform<T>>(out, low, high);
        });
      },
      py::arg("out"), py::arg("low") = 0.0, py::arg("high") = 1.0, "Fill `out` in place with U[low, high).");
  m.def(
      "rng_normal",
      [](const py::handle& out, double mean, double std) {
        dispatch_float(out, "out", [&](auto t) {
          using T = decltype(t);
          fill<T, rng_normal<T>>(out, mean, std);
        });
      },
      py::arg("out"), py::arg("mean") = 0.0, py::arg("std") = 1.0, "Fill `out` in place with N(mean, std^2).");
  m.def(
      "rng_bits",
      [](py::ssize_t n) {
        if (n < 0) value_error("n", "n >= 0", std::to_string(n));
        carray<std::uint32_t> a({n});
        std::uint32_t* p = a.mutable_data();
        py::gil_scoped_release release;
        rng_bits(p, n);
        return a;
      },
      py::arg("n"), "n random uint32 words from the library generator.");
}

}  // namespace gk::bind
