// Diagnostics: one-pass activation statistics (gk.callbacks.ActivationStats, gk.diagnostics).
#include <cmath>
#include <cstdint>
#include <string>

#include "common.h"
#include "gradkit/stats.h"

namespace gk::bind {

void bind_diag(py::module_& m) {
  m.def(
      "activation_stats",
      [](const py::handle& x_obj, const py::handle& moments_obj, const py::handle& counts_obj,
         const py::handle& positive_obj, const py::handle& scale_obj, const py::handle& shift_obj, bool relu,
         double lo, double hi, double sat_lo, double sat_hi) {
        auto moments = out<double>(moments_obj, "moments");
        check_shape(moments, {2}, "moments");
        if (!py::isinstance<py::array_t<std::int64_t>>(counts_obj) ||
            !py::reinterpret_borrow<py::array>(counts_obj).dtype().is(py::dtype::of<std::int64_t>()))
          type_error("counts", "a numpy.ndarray of int64", dtype_str(counts_obj));
        auto counts_arr = py::reinterpret_borrow<py::array>(counts_obj);
        if (counts_arr.ndim() != 1 || counts_arr.shape(0) < 1)
          value_error("counts", "a 1-D array of nbins + 1 >= 1 entries", "shape " + shape_str(counts_arr));
        if (!(counts_arr.flags() & py::array::c_style) || !counts_arr.writeable())
          value_error("counts", "a writeable C-contiguous array", "a read-only or non-contiguous one");
        const int nbins = static_cast<int>(counts_arr.shape(0) - 1);
        if (nbins > 0 && !(std::isfinite(lo) && std::isfinite(hi) && lo < hi))
          value_error("lo, hi", "finite bounds with lo < hi", std::to_string(lo) + ", " + std::to_string(hi));
        return dispatch_float(x_obj, "x", [&](auto tag) {
          using T = decltype(tag);
          auto x = in<T>(x_obj, "x");
          if (x.ndim() < 1) value_error("x", "an array of rank >= 1", "a 0-d array");
          index_t N = x.shape(0), C = x.ndim() >= 2 ? x.shape(1) : 1, S = 1;
          for (py::ssize_t i = 2; i < x.ndim(); ++i) S *= x.shape(i);
          std::uint8_t* positive = nullptr;
          py::array_t<std::uint8_t> pos_arr;
          if (!positive_obj.is_none()) {
            if (!py::isinstance<py::array>(positive_obj) ||
                !py::reinterpret_borrow<py::array>(positive_obj).dtype().is(py::dtype::of<std::uint8_t>()))
              type_error("positive", "a numpy.ndarray of uint8", dtype_str(positive_obj));
            pos_arr = py::reinterpret_borrow<py::array_t<std::uint8_t>>(positive_obj);
            check_shape(pos_arr, {C}, "positive");
            if (!(pos_arr.flags() & py::array::c_style) || !pos_arr.writeable())
              value_error("positive", "a writeable C-contiguous array", "a read-only or non-contiguous one");
            positive = pos_arr.mutable_data();
          }
          if (scale_obj.is_none() != shift_obj.is_none())
            value_error("scale, shift", "both or neither", scale_obj.is_none() ? "only shift" : "only scale");
          carray<double> scale, shift;
          StatsArgs args;
          if (!scale_obj.is_none()) {
            scale = in<double>(scale_obj, "scale");
            shift = in<double>(shift_obj, "shift");
            check_shape(scale, {C}, "scale");
            check_shape(shift, {C}, "shift");
            args.scale = scale.data();
            args.shift = shift.data();
          }
          args.relu = relu;
          args.nbins = nbins;
          args.lo = lo;
          args.hi = hi;
          args.sat_lo = sat_lo;
          args.sat_hi = sat_hi;
          double* mom = moments.mutable_data();
          auto* cnt = static_cast<std::int64_t*>(counts_arr.mutable_data());
          py::gil_scoped_release release;
          activation_stats_forward<T>(mom, cnt, positive, x.data(), N, C, S, args);
        });
      },
      py::arg("x"), py::arg("moments"), py::arg("counts"), py::arg("positive") = py::none(),
      py::arg("scale") = py::none(), py::arg("shift") = py::none(), py::arg("relu") = false, py::arg("lo") = 0.0,
      py::arg("hi") = 1.0, py::arg("sat_lo") = -INFINITY, py::arg("sat_hi") = INFINITY,
      "Adds one pass of statistics of x (N, C, ...) into moments (2,) float64 [sum, sum of squares], "
      "counts (nbins + 1,) int64 [histogram over nbins equal bins of [lo, hi] (ends clamped), then the "
      "number of values <= sat_lo or >= sat_hi] and positive (C,) uint8 (1 where a channel had a value > 0). "
      "With scale and shift (C,) float64, measures max(scale * x + shift, 0) if relu else scale * x + shift.");
}

}  // namespace gk::bind
