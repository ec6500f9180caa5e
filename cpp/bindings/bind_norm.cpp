// Normalization: batch norm, group norm (instance norm), layer norm; forward and backward.
// Statistics passed between forward and backward are float64 arrays (mean, rstd).
#include <string>

#include "common.h"
#include "gradkit/norm.h"

namespace gk::bind {

namespace {

// An optional (shape,) input of dtype T: null when obj is None.
template <class T>
struct OptIn {
  carray<T> arr;
  const T* ptr = nullptr;
};

template <class T>
OptIn<T> opt_in(const py::handle& obj, const char* name, const std::vector<py::ssize_t>& shape) {
  OptIn<T> o;
  if (obj.is_none()) return o;
  o.arr = in<T>(obj, name);
  check_shape(o.arr, shape, name);
  o.ptr = o.arr.data();
  return o;
}

// An optional in-place (shape,) buffer of dtype T (dweight, running_mean, ...): null when None.
template <class T>
struct OptOut {
  carray<T> arr;
  T* ptr = nullptr;
};

template <class T>
OptOut<T> opt_out(const py::handle& obj, const char* name, const std::vector<py::ssize_t>& shape) {
  OptOut<T> o;
  if (obj.is_none()) return o;
  o.arr = out<T>(obj, name);
  check_shape(o.arr, shape, name);
  o.ptr = o.arr.mutable_data();
  return o;
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// x as (N, C, S): rank >= 2 (the norms over channels).
struct NCS {
  index_t N, C, S;
};

NCS ncs(const py::array& x, const char* name) {
  if (x.ndim() < 2) value_error(name, "an array of rank >= 2 (N, C, ...)", std::to_string(x.ndim()) + "-D array of shape " + shape_str(x));
  NCS d{x.shape(0), x.shape(1), 1};
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.S *= x.shape(i);
  return d;
}

// dy must have x's shape; both of dtype T.
template <class T>
carray<T> grad_in(const py::handle& dy_obj, const py::array& x) {
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, shape_of(x), "dy");
  return dy;
}

// The float64 statistics saved by a forward: shape `shape`.
carray<double> stats_in(const py::handle& obj, const char* name, const std::vector<py::ssize_t>& shape) {
  auto a = in<double>(obj, name);
  check_shape(a, shape, name);
  return a;
}

// The shared tail of every forward: optional weight and bias of param_shape, an output like x and
// float64 statistics of stat_shape; kernel(y, mean, rstd, x, weight, bias) runs without the GIL.
template <class T, class F>
py::tuple forward_common(const carray<T>& x, const py::handle& w_obj, const py::handle& b_obj,
                         const std::vector<py::ssize_t>& param_shape, const std::vector<py::ssize_t>& stat_shape,
                         double eps, F&& kernel) {
  auto w = opt_in<T>(w_obj, "weight", param_shape);
  auto b = opt_in<T>(b_obj, "bias", param_shape);
  auto y = empty<T>(shape_of(x));
  auto mean = empty<double>(stat_shape);
  auto rstd = empty<double>(stat_shape);
  const T* px = x.data();
  T* py_ = y.mutable_data();
  double* pm = mean.mutable_data();
  double* pr = rstd.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(py_, pm, pr, px, w.ptr, b.ptr);
  }
  return py::make_tuple(y, mean, rstd);
}

// The shared body of every backward: dy like x, the forward's statistics of stat_shape,
// optional weight and in-place dweight, dbias of param_shape;
// kernel(dx, dweight, dbias, dy, x, mean, rstd, weight) runs without the GIL.
template <class T, class F>
py::array backward_common(const py::handle& dy_obj, const carray<T>& x, const py::handle& mean_obj,
                          const py::handle& rstd_obj, const py::handle& w_obj, const py::handle& dw_obj,
                          const py::handle& db_obj, const std::vector<py::ssize_t>& param_shape,
                          const std::vector<py::ssize_t>& stat_shape, F&& kernel) {
  auto dy = grad_in<T>(dy_obj, x);
  auto mean = stats_in(mean_obj, "mean", stat_shape);
  auto rstd = stats_in(rstd_obj, "rstd", stat_shape);
  auto w = opt_in<T>(w_obj, "weight", param_shape);
  auto dw = opt_out<T>(dw_obj, "dweight", param_shape);
  auto db = opt_out<T>(db_obj, "dbias", param_shape);
  auto dx = empty<T>(shape_of(x));
  const T *pdy = dy.data(), *px = x.data();
  const double *pm = mean.data(), *pr = rstd.data();
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(pdx, dw.ptr, db.ptr, pdy, px, pm, pr, w.ptr);
  }
  return dx;
}

// ------------------------------------------------------------------------------------------
// relu: y = relu(batch_norm(x) + residual) (residual may be None), else plain batch norm (no residual).
template <class T>
py::tuple batch_norm_forward_impl(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                                  const py::handle& rm_obj, const py::handle& rv_obj, bool training, double momentum,
                                  double eps, bool relu = false, const py::handle& res_obj = py::none()) {
  auto x = in<T>(x_obj, "input");
  const NCS d = ncs(x, "input");
  auto rm = opt_out<T>(rm_obj, "running_mean", {d.C});
  auto rv = opt_out<T>(rv_obj, "running_var", {d.C});
  auto res = opt_in<T>(res_obj, "residual", shape_of(x));
  if ((rm.ptr == nullptr) != (rv.ptr == nullptr)) {
    value_error("running_var", "running_mean and running_var both given or both None", "only one of them");
  }
  const bool batch_stats = training || rm.ptr == nullptr;
  if (batch_stats && d.N * d.S == 1) {
    throw py::value_error("input: Expected more than 1 value per channel when training, got input size " +
                          shape_str(x));
  }
  return forward_common<T>(x, w_obj, b_obj, {d.C}, {d.C}, eps,
                           [&](T* y, double* mean, double* rstd, const T* px, const T* w, const T* b) {
                             if (relu) {
                               batch_norm_relu_forward<T>(y, mean, rstd, px, res.ptr, w, b, rm.ptr, rv.ptr, d.N, d.C,
                                                          d.S, batch_stats, momentum, eps);
                             } else {
                               batch_norm_forward<T>(y, mean, rstd, px, w, b, rm.ptr, rv.ptr, d.N, d.C, d.S,
                                                     batch_stats, momentum, eps);
                             }
                           });
}

template <class T>
py::array batch_norm_backward_impl(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& mean_obj,
                                   const py::handle& rstd_obj, const py::handle& w_obj, const py::handle& dw_obj,
                                   const py::handle& db_obj, bool training) {
  auto x = in<T>(x_obj, "input");
  const NCS d = ncs(x, "input");
  return backward_common<T>(dy_obj, x, mean_obj, rstd_obj, w_obj, dw_obj, db_obj, {d.C}, {d.C},
                            [&](T* dx, T* dw, T* db, const T* dy, const T* px, const double* m, const double* r,
                                const T* w) {
                              batch_norm_backward<T>(dx, dw, db, dy, px, m, r, w, d.N, d.C, d.S, training);
                            });
}

// The gradient of relu(batch_norm(x) + residual): (dx, dresidual or None).
template <class T>
py::tuple batch_norm_relu_backward_impl(const py::handle& dy_obj, const py::handle& y_obj, const py::handle& x_obj,
                                        const py::handle& mean_obj, const py::handle& rstd_obj,
                                        const py::handle& w_obj, const py::handle& dw_obj, const py::handle& db_obj,
                                        bool need_dresidual, bool training) {
  auto x = in<T>(x_obj, "input");
  const NCS d = ncs(x, "input");
  auto y = in<T>(y_obj, "output");
  check_shape(y, shape_of(x), "output");
  py::object dres = py::none();
  T* pdres = nullptr;
  if (need_dresidual) {
    auto a = empty<T>(shape_of(x));
    pdres = a.mutable_data();
    dres = a;
  }
  const T* py_ = y.data();
  py::array dx = backward_common<T>(dy_obj, x, mean_obj, rstd_obj, w_obj, dw_obj, db_obj, {d.C}, {d.C},
                                    [&](T* pdx, T* dw, T* db, const T* dy, const T* px, const double* m,
                                        const double* r, const T* w) {
                                      batch_norm_relu_backward<T>(pdx, pdres, dw, db, dy, py_, px, m, r, w, d.N, d.C,
                                                                  d.S, training);
                                    });
  return py::make_tuple(dx, dres);
}

// ------------------------------------------------------------------------------------------
// Batch norm + ReLU + MaxPool2d(2) (kernel 2, stride 2, no padding) of (N, C, H, W) input.
struct NCHW {
  index_t N, C, H, W;
};

NCHW pool2_input(const py::array& x) {
  check_ndim(x, 4, "input");
  const NCHW d{x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
  if (d.H < 2 || d.W < 2) {
    value_error("input", "H and W >= 2 (a 2x2 max pool needs one window)", "shape " + shape_str(x));
  }
  return d;
}

template <class T>
py::tuple bn_relu_pool2_forward_impl(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                                     const py::handle& rm_obj, const py::handle& rv_obj, bool training,
                                     double momentum, double eps) {
  auto x = in<T>(x_obj, "input");
  const NCHW d = pool2_input(x);
  auto w = opt_in<T>(w_obj, "weight", {d.C});
  auto b = opt_in<T>(b_obj, "bias", {d.C});
  auto rm = opt_out<T>(rm_obj, "running_mean", {d.C});
  auto rv = opt_out<T>(rv_obj, "running_var", {d.C});
  if ((rm.ptr == nullptr) != (rv.ptr == nullptr)) {
    value_error("running_var", "running_mean and running_var both given or both None", "only one of them");
  }
  const bool batch_stats = training || rm.ptr == nullptr;  // (H, W >= 2: never one value per channel)
  auto y = empty<T>({d.N, d.C, d.H / 2, d.W / 2});
  auto code = empty<std::uint8_t>({d.N, d.C, d.H / 2, d.W / 2});
  auto mean = empty<double>({d.C});
  auto rstd = empty<double>({d.C});
  const T* px = x.data();
  T* py_ = y.mutable_data();
  std::uint8_t* pc = code.mutable_data();
  double* pm = mean.mutable_data();
  double* pr = rstd.mutable_data();
  {
    py::gil_scoped_release release;
    batch_norm_relu_pool2_forward<T>(py_, pc, pm, pr, px, w.ptr, b.ptr, rm.ptr, rv.ptr, d.N, d.C, d.H, d.W,
                                     batch_stats, momentum, eps);
  }
  return py::make_tuple(y, code, mean, rstd);
}

template <class T>
py::array bn_relu_pool2_backward_impl(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& code_obj,
                                      const py::handle& mean_obj, const py::handle& rstd_obj, const py::handle& w_obj,
                                      const py::handle& dw_obj, const py::handle& db_obj, bool training) {
  auto x = in<T>(x_obj, "input");
  const NCHW d = pool2_input(x);
  const std::vector<py::ssize_t> pooled{d.N, d.C, d.H / 2, d.W / 2};
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, pooled, "dy");
  if (!is_array_of<std::uint8_t>(code_obj)) {
    type_error("code", "a numpy.ndarray of uint8 (from batch_norm_relu_pool2_forward)", dtype_str(code_obj));
  }
  auto code = carray<std::uint8_t>::ensure(code_obj);
  check_shape(code, pooled, "code");
  auto mean = stats_in(mean_obj, "mean", {d.C});
  auto rstd = stats_in(rstd_obj, "rstd", {d.C});
  auto w = opt_in<T>(w_obj, "weight", {d.C});
  auto dw = opt_out<T>(dw_obj, "dweight", {d.C});
  auto db = opt_out<T>(db_obj, "dbias", {d.C});
  auto dx = empty<T>(shape_of(x));
  const T *pdy = dy.data(), *px = x.data();
  const std::uint8_t* pc = code.data();
  const double *pm = mean.data(), *pr = rstd.data();
  T* pdx = dx.mutable_data();
  index_t bad;
  {
    py::gil_scoped_release release;
    bad = batch_norm_relu_pool2_backward<T>(pdx, dw.ptr, db.ptr, pdy, pc, px, pm, pr, w.ptr, d.N, d.C, d.H, d.W,
                                            training);
  }
  if (bad != 0) {
    value_error("code", "values 0..3 or 255 (from batch_norm_relu_pool2_forward)", std::to_string(bad) + " other values");
  }
  return dx;
}

// ------------------------------------------------------------------------------------------
void check_groups(index_t num_groups, index_t C) {
  if (C % num_groups != 0) {
    value_error("num_groups", "a divisor of the number of channels " + std::to_string(C),
                std::to_string(num_groups));
  }
}

template <class T>
py::tuple group_norm_forward_impl(const py::handle& x_obj, index_t G, const py::handle& w_obj, const py::handle& b_obj,
                                  double eps) {
  auto x = in<T>(x_obj, "input");
  const NCS d = ncs(x, "input");
  check_groups(G, d.C);
  return forward_common<T>(x, w_obj, b_obj, {d.C}, {d.N, G}, eps,
                           [&](T* y, double* mean, double* rstd, const T* px, const T* w, const T* b) {
                             group_norm_forward<T>(y, mean, rstd, px, w, b, d.N, d.C, d.S, G, eps);
                           });
}

template <class T>
py::array group_norm_backward_impl(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& mean_obj,
                                   const py::handle& rstd_obj, index_t G, const py::handle& w_obj,
                                   const py::handle& dw_obj, const py::handle& db_obj) {
  auto x = in<T>(x_obj, "input");
  const NCS d = ncs(x, "input");
  check_groups(G, d.C);
  return backward_common<T>(dy_obj, x, mean_obj, rstd_obj, w_obj, dw_obj, db_obj, {d.C}, {d.N, G},
                            [&](T* dx, T* dw, T* db, const T* dy, const T* px, const double* m, const double* r,
                                const T* w) {
                              group_norm_backward<T>(dx, dw, db, dy, px, m, r, w, d.N, d.C, d.S, G);
                            });
}

// ------------------------------------------------------------------------------------------
// x (..., *normalized_shape) as (M, D); the statistics have shape x.shape[:-k].
struct MD {
  index_t M, D;
  std::vector<py::ssize_t> outer;
};

MD layer_dims(const py::array& x, const std::vector<py::ssize_t>& nshape) {
  const auto k = static_cast<py::ssize_t>(nshape.size());
  if (k == 0) value_error("normalized_shape", "a non-empty shape", "()");
  for (py::ssize_t s : nshape) {
    if (s < 0) value_error("normalized_shape", "non-negative sizes", shape_str(nshape));
  }
  bool ok = x.ndim() >= k;
  for (py::ssize_t i = 0; ok && i < k; ++i) ok = x.shape(x.ndim() - k + i) == nshape[i];
  if (!ok) {
    value_error("input", "an array whose trailing dimensions are normalized_shape " + shape_str(nshape),
                "shape " + shape_str(x));
  }
  MD d{1, 1, {}};
  for (py::ssize_t i = 0; i < x.ndim() - k; ++i) {
    d.outer.push_back(x.shape(i));
    d.M *= x.shape(i);
  }
  for (py::ssize_t s : nshape) d.D *= s;
  return d;
}

template <class T>
py::tuple layer_norm_forward_impl(const py::handle& x_obj, const std::vector<py::ssize_t>& nshape,
                                  const py::handle& w_obj, const py::handle& b_obj, double eps) {
  auto x = in<T>(x_obj, "input");
  const MD d = layer_dims(x, nshape);
  return forward_common<T>(x, w_obj, b_obj, nshape, d.outer, eps,
                           [&](T* y, double* mean, double* rstd, const T* px, const T* w, const T* b) {
                             layer_norm_forward<T>(y, mean, rstd, px, w, b, d.M, d.D, eps);
                           });
}

template <class T>
py::array layer_norm_backward_impl(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& mean_obj,
                                   const py::handle& rstd_obj, const std::vector<py::ssize_t>& nshape,
                                   const py::handle& w_obj, const py::handle& dw_obj, const py::handle& db_obj) {
  auto x = in<T>(x_obj, "input");
  const MD d = layer_dims(x, nshape);
  return backward_common<T>(dy_obj, x, mean_obj, rstd_obj, w_obj, dw_obj, db_obj, nshape, d.outer,
                            [&](T* dx, T* dw, T* db, const T* dy, const T* px, const double* m, const double* r,
                                const T* w) { layer_norm_backward<T>(dx, dw, db, dy, px, m, r, w, d.M, d.D); });
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def(
      "batch_norm_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const py::handle& running_mean,
         const py::handle& running_var, bool training, double momentum, double eps) {
        return dispatch_float(x, "input", [&](auto t) {
          return batch_norm_forward_impl<decltype(t)>(x, weight, bias, running_mean, running_var, training, momentum,
                                                      eps);
        });
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("training"), py::arg("momentum"), py::arg("eps"),
      "Batch norm of (N, C, ...) input -> (y, mean, rstd); updates running stats in place when training.");
  m.def(
      "batch_norm_backward",
      [](const py::handle& dy, const py::handle& x, const py::handle& mean, const py::handle& rstd,
         const py::handle& weight, const py::handle& dweight, const py::handle& dbias, bool training) {
        return dispatch_float(x, "input", [&](auto t) {
          return batch_norm_backward_impl<decltype(t)>(dy, x, mean, rstd, weight, dweight, dbias, training);
        });
      },
      py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("weight"), py::arg("dweight"),
      py::arg("dbias"), py::arg("training"), "Batch norm backward -> dx; adds into dweight and dbias.");
  m.def(
      "batch_norm_relu_forward",
      [](const py::handle& x, const py::handle& residual, const py::handle& weight, const py::handle& bias,
         const py::handle& running_mean, const py::handle& running_var, bool training, double momentum, double eps) {
        return dispatch_float(x, "input", [&](auto t) {
          return batch_norm_forward_impl<decltype(t)>(x, weight, bias, running_mean, running_var, training, momentum,
                                                      eps, true, residual);
        });
      },
      py::arg("input"), py::arg("residual"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
      "relu(batch_norm(x) + residual) (residual may be None) -> (y, mean, rstd); running stats as batch_norm_forward.");
  m.def(
      "batch_norm_relu_backward",
      [](const py::handle& dy, const py::handle& y, const py::handle& x, const py::handle& mean,
         const py::handle& rstd, const py::handle& weight, const py::handle& dweight, const py::handle& dbias,
         bool need_dresidual, bool training) {
        return dispatch_float(x, "input", [&](auto t) {
          return batch_norm_relu_backward_impl<decltype(t)>(dy, y, x, mean, rstd, weight, dweight, dbias,
                                                            need_dresidual, training);
        });
      },
      py::arg("dy"), py::arg("output"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("weight"),
      py::arg("dweight"), py::arg("dbias"), py::arg("need_dresidual"), py::arg("training"),
      "Gradient of batch_norm_relu_forward -> (dx, dresidual or None); adds into dweight and dbias.");
  m.def(
      "batch_norm_relu_pool2_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const py::handle& running_mean,
         const py::handle& running_var, bool training, double momentum, double eps) {
        return dispatch_float(x, "input", [&](auto t) {
          return bn_relu_pool2_forward_impl<decltype(t)>(x, weight, bias, running_mean, running_var, training,
                                                         momentum, eps);
        });
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
      py::arg("training"), py::arg("momentum"), py::arg("eps"),
      "max_pool2d(relu(batch_norm(x)), 2) of (N, C, H, W) input -> (y, code (uint8), mean, rstd).");
  m.def(
      "batch_norm_relu_pool2_backward",
      [](const py::handle& dy, const py::handle& x, const py::handle& code, const py::handle& mean,
         const py::handle& rstd, const py::handle& weight, const py::handle& dweight, const py::handle& dbias,
         bool training) {
        return dispatch_float(x, "input", [&](auto t) {
          return bn_relu_pool2_backward_impl<decltype(t)>(dy, x, code, mean, rstd, weight, dweight, dbias, training);
        });
      },
      py::arg("dy"), py::arg("input"), py::arg("code"), py::arg("mean"), py::arg("rstd"), py::arg("weight"),
      py::arg("dweight"), py::arg("dbias"), py::arg("training"),
      "Gradient of batch_norm_relu_pool2_forward -> dx (N, C, H, W); adds into dweight and dbias.");
  m.def(
      "group_norm_forward",
      [](const py::handle& x, index_t num_groups, const py::handle& weight, const py::handle& bias, double eps) {
        return dispatch_float(x, "input", [&](auto t) {
          return group_norm_forward_impl<decltype(t)>(x, num_groups, weight, bias, eps);
        });
      },
      py::arg("input"), py::arg("num_groups"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
      "Group norm of (N, C, ...) input -> (y, mean (N, G), rstd (N, G)).");
  m.def(
      "group_norm_backward",
      [](const py::handle& dy, const py::handle& x, const py::handle& mean, const py::handle& rstd, index_t num_groups,
         const py::handle& weight, const py::handle& dweight, const py::handle& dbias) {
        return dispatch_float(x, "input", [&](auto t) {
          return group_norm_backward_impl<decltype(t)>(dy, x, mean, rstd, num_groups, weight, dweight, dbias);
        });
      },
      py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("num_groups"), py::arg("weight"),
      py::arg("dweight"), py::arg("dbias"), "Group norm backward -> dx; adds into dweight and dbias.");
  m.def(
      "layer_norm_forward",
      [](const py::handle& x, const std::vector<py::ssize_t>& normalized_shape, const py::handle& weight,
         const py::handle& bias, double eps) {
        return dispatch_float(x, "input", [&](auto t) {
          return layer_norm_forward_impl<decltype(t)>(x, normalized_shape, weight, bias, eps);
        });
      },
      py::arg("input"), py::arg("normalized_shape"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
      "Layer norm over the trailing normalized_shape dims -> (y, mean, rstd).");
  m.def(
      "layer_norm_backward",
      [](const py::handle& dy, const py::handle& x, const py::handle& mean, const py::handle& rstd,
         const std::vector<py::ssize_t>& normalized_shape, const py::handle& weight, const py::handle& dweight,
         const py::handle& dbias) {
        return dispatch_float(x, "input", [&](auto t) {
          return layer_norm_backward_impl<decltype(t)>(dy, x, mean, rstd, normalized_shape, weight, dweight, dbias);
        });
      },
      py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("normalized_shape"),
      py::arg("weight"), py::arg("dweight"), py::arg("dbias"), "Layer norm backward -> dx; adds into dweight and dbias.");
}

}  // namespace gk::bind
