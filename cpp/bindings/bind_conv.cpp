// conv2d and pooling: validation (shapes, sizes, dtypes) here, then the GIL is released.
// The hyper-parameters (stride, padding, dilation, groups, kernel_size) arrive checked by the
// Python layer (gk.ops, or the layers, which hold them read-only): stride, dilation, kernel >= 1,
// padding >= 0 (at most half the kernel for pooling), groups >= 1. They are not checked again here;
// what depends on the arrays (groups dividing the channels, the output size, overflow) is.
#include <array>
#include <cstdint>
#include <limits>
#include <string>

#include "common.h"
#include "gradkit/conv.h"
#include "gradkit/pool.h"

namespace gk::bind {

namespace {

using Pair = std::array<index_t, 2>;

// Output size of one dimension; ValueError when the (dilated) kernel exceeds the padded input.
// Sizes are checked for overflow (padding and dilation up to 2**63 - 1 reach here).
index_t out_size(index_t in, index_t k, index_t stride, index_t pad, index_t dil, const char* dim) {
  const std::string d(dim);
  const index_t padded = add_size(in, mul_size(2, pad, "padding", "2*padding"), "padding",
                                  "a padded input " + d + " (" + d + " + 2*padding)");
  const index_t eff = add_size(mul_size(dil, k - 1, "dilation", "dilation*(k-1)"), 1, "dilation",
                               "an effective kernel " + d + " dilation*(k-1)+1");
  if (padded < eff) {
    value_error("kernel_size", "an effective kernel " + d + " (dilation*(k-1)+1) no larger than the padded input " +
                                   d + " " + std::to_string(in) + " + 2*" + std::to_string(pad) + " = " +
                                   std::to_string(padded),
                std::to_string(eff));
  }
  return (padded - eff) / stride + 1;
}

std::string shape4(index_t a, index_t b, index_t c, index_t d) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " + std::to_string(d) + ")";
}

// Checks x and weight against each other and the hyper-parameters; returns the full shape.
ConvShape conv_shape(const py::array& x, const py::array& w, const Pair& stride, const Pair& padding,
                     const Pair& dilation, index_t groups) {
  if (x.ndim() != 4) value_error("x", "a 4-D array (N, C, H, W)", std::to_string(x.ndim()) + "-D array of shape " + shape_str(x));
  if (w.ndim() != 4) {
    value_error("weight", "a 4-D array (out_channels, in_channels/groups, kh, kw)",
                std::to_string(w.ndim()) + "-D array of shape " + shape_str(w));
  }
  ConvShape s{};
  s.N = x.shape(0);
  s.C = x.shape(1);
  s.H = x.shape(2);
  s.W = x.shape(3);
  s.OC = w.shape(0);
  s.KH = w.shape(2);
  s.KW = w.shape(3);
  if (s.C < 1) value_error("x", "at least 1 channel", "shape " + shape_str(x));
  if (s.OC < 1) value_error("weight", "at least 1 output channel", "shape " + shape_str(w));
  if (s.KH < 1 || s.KW < 1) value_error("weight", "a kernel of positive size", "shape " + shape_str(w));
  if (s.C % groups != 0 || s.OC % groups != 0) {
    value_error("groups", "a divisor of in_channels (" + std::to_string(s.C) + ") and out_channels (" +
                              std::to_string(s.OC) + ")",
                std::to_string(groups));
  }
  if (w.shape(1) * groups != s.C) {
    value_error("weight", "shape[1] = in_channels/groups = " + std::to_string(s.C) + "/" + std::to_string(groups) +
                              " = " + std::to_string(s.C / groups) + " (x has " + std::to_string(s.C) + " channels)",
                "shape " + shape_str(w));
  }
  s.SH = stride[0];
  s.SW = stride[1];
  s.PH = padding[0];
  s.PW = padding[1];
  s.DH = dilation[0];
  s.DW = dilation[1];
  s.G = groups;
  s.OH = out_size(s.H, s.KH, s.SH, s.PH, s.DH, "height");
  s.OW = out_size(s.W, s.KW, s.SW, s.PW, s.DW, "width");
  check_alloc({s.N, s.OC, s.OH, s.OW}, sizeof(double), "padding");  // the output, as large as padding makes it
  return s;
}

Activation parse_activation(const std::string& a) {
  if (a == "none") return Activation::none;
  if (a == "relu") return Activation::relu;
  value_error("activation", "'none' or 'relu'", "'" + a + "'");
}

template <class T>
py::array conv_forward_impl(const py::handle& x_obj, const py::handle& w_obj, const py::handle& b_obj,
                            const Pair& stride, const Pair& padding, const Pair& dilation, index_t groups,
                            const std::string& activation) {
  auto x = in<T>(x_obj, "x");
  auto w = in<T>(w_obj, "weight");
  const ConvShape s = conv_shape(x, w, stride, padding, dilation, groups);
  const Activation act = parse_activation(activation);
  carray<T> b;
  if (!b_obj.is_none()) {
    b = in<T>(b_obj, "bias");
    check_shape(b, {s.OC}, "bias");
  }
  auto y = empty<T>({s.N, s.OC, s.OH, s.OW});
  const T* px = x.data();
  const T* pw = w.data();
  const T* pb = b_obj.is_none() ? nullptr : b.data();
  T* py = y.mutable_data();
  {
    py::gil_scoped_release release;
    conv2d_forward<T>(py, px, pw, pb, s, act);
  }
  return y;
}

template <class T>
py::tuple conv_backward_impl(const py::handle& dy_obj, const py::handle& x_obj, const py::handle& w_obj,
                             const Pair& stride, const Pair& padding, const Pair& dilation, index_t groups,
                             const py::handle& dw_obj, const py::handle& db_obj, bool need_dx, bool need_dweight,
                             bool need_dbias) {
  auto x = in<T>(x_obj, "x");
  auto w = in<T>(w_obj, "weight");
  const ConvShape s = conv_shape(x, w, stride, padding, dilation, groups);
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, {s.N, s.OC, s.OH, s.OW}, "dy");
  carray<T> dx, dw, db;
  py::object dx_ret = py::none(), dw_ret = py::none(), db_ret = py::none();
  if (need_dx) {
    dx = empty<T>({s.N, s.C, s.H, s.W});
    dx_ret = dx;
  }
  if (need_dweight) {
    if (dw_obj.is_none()) {
      dw = carray<T>({w.shape(0), w.shape(1), w.shape(2), w.shape(3)});
      std::fill(dw.mutable_data(), dw.mutable_data() + dw.size(), T(0));
    } else {
      dw = out<T>(dw_obj, "dweight");
      check_shape(dw, {w.shape(0), w.shape(1), w.shape(2), w.shape(3)}, "dweight");
    }
    dw_ret = dw;
  }
  if (need_dbias) {
    if (db_obj.is_none()) {
      db = carray<T>({s.OC});
      std::fill(db.mutable_data(), db.mutable_data() + db.size(), T(0));
    } else {
      db = out<T>(db_obj, "dbias");
      check_shape(db, {s.OC}, "dbias");
    }
    db_ret = db;
  }
  T* pdx = need_dx ? dx.mutable_data() : nullptr;
  T* pdw = need_dweight ? dw.mutable_data() : nullptr;
  T* pdb = need_dbias ? db.mutable_data() : nullptr;
  const T* pdy = dy.data();
  const T* px = x.data();
  const T* pw = w.data();
  {
    py::gil_scoped_release release;
    conv2d_backward<T>(pdx, pdw, pdb, pdy, px, pw, s);
  }
  return py::make_tuple(dx_ret, dw_ret, db_ret);
}

// ---- pooling --------------------------------------------------------------

PoolShape pool_shape(index_t N, index_t C, index_t H, index_t W, const Pair& kernel, const Pair& stride,
                     const Pair& padding) {
  PoolShape s{};
  s.NC = N * C;
  s.H = H;
  s.W = W;
  s.KH = kernel[0];
  s.KW = kernel[1];
  s.SH = stride[0];
  s.SW = stride[1];
  s.PH = padding[0];
  s.PW = padding[1];
  s.OH = out_size(H, s.KH, s.SH, s.PH, 1, "height");
  s.OW = out_size(W, s.KW, s.SW, s.PW, 1, "width");
  if (H != 0 && W > std::numeric_limits<std::int32_t>::max() / H) {
    value_error("x", "planes of fewer than 2**31 elements", std::to_string(H) + " * " + std::to_string(W));
  }
  check_alloc({N, C, s.OH, s.OW}, sizeof(double), "padding");
  // The kernels divide by KH*KW and weigh their work as N*C*(H*W + OH*OW*KH*KW): both must fit.
  const std::string cost = "a pooling cost N*C*(H*W + OH*OW*KH*KW)";
  const index_t window = mul_size(s.KH, s.KW, "kernel_size", "a window size kernel_size[0]*kernel_size[1]");
  const index_t out_work = mul_size(mul_size(s.OH, s.OW, "kernel_size", cost), window, "kernel_size", cost);
  mul_size(s.NC, add_size(H * W, out_work, "kernel_size", cost), "kernel_size", cost);
  return s;
}

void check_x4(const py::array& x, const char* name) {
  if (x.ndim() != 4) value_error(name, "a 4-D array (N, C, H, W)", std::to_string(x.ndim()) + "-D array of shape " + shape_str(x));
}

std::array<index_t, 4> input_shape(const std::vector<index_t>& shape) {
  if (shape.size() != 4) value_error("input_shape", "4 sizes (N, C, H, W)", std::to_string(shape.size()) + " sizes");
  for (index_t v : shape) {
    if (v < 0) value_error("input_shape", "non-negative sizes", std::to_string(v));
  }
  check_alloc({shape[0], shape[1], shape[2], shape[3]}, sizeof(double), "input_shape");  // dx has this shape
  return {shape[0], shape[1], shape[2], shape[3]};
}

template <class T>
py::tuple max_forward_impl(const py::handle& x_obj, const Pair& kernel, const Pair& stride, const Pair& padding) {
  auto x = in<T>(x_obj, "x");
  check_x4(x, "x");
  const PoolShape s = pool_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel, stride, padding);
  auto y = empty<T>({x.shape(0), x.shape(1), s.OH, s.OW});
  auto idx = empty<std::int32_t>({x.shape(0), x.shape(1), s.OH, s.OW});
  const T* px = x.data();
  T* py = y.mutable_data();
  std::int32_t* pi = idx.mutable_data();
  {
    py::gil_scoped_release release;
    max_pool2d_forward<T>(py, pi, px, s);
  }
  return py::make_tuple(y, idx);
}

template <class T>
py::array max_backward_impl(const py::handle& dy_obj, const py::handle& idx_obj, const std::vector<index_t>& shape,
                            const Pair& kernel, const Pair& stride, const Pair& padding) {
  const auto sh = input_shape(shape);
  const PoolShape s = pool_shape(sh[0], sh[1], sh[2], sh[3], kernel, stride, padding);
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, {sh[0], sh[1], s.OH, s.OW}, "dy");
  if (!is_array_of<std::int32_t>(idx_obj)) {
    type_error("indices", "a numpy.ndarray of int32 (from max_pool2d_forward)", dtype_str(idx_obj));
  }
  auto idx = carray<std::int32_t>::ensure(idx_obj);
  check_shape(idx, {sh[0], sh[1], s.OH, s.OW}, "indices");
  auto dx = empty<T>({sh[0], sh[1], sh[2], sh[3]});
  T* pdx = dx.mutable_data();
  const T* pdy = dy.data();
  const std::int32_t* pi = idx.data();
  index_t bad;
  {
    py::gil_scoped_release release;
    bad = max_pool2d_backward<T>(pdx, pdy, pi, s);
  }
  if (bad != 0) {
    value_error("indices", "values in [0, H*W) = [0, " + std::to_string(sh[2] * sh[3]) + ")",
                std::to_string(bad) + " values outside");
  }
  return dx;
}

template <class T>
py::array avg_forward_impl(const py::handle& x_obj, const Pair& kernel, const Pair& stride, const Pair& padding) {
  auto x = in<T>(x_obj, "x");
  check_x4(x, "x");
  const PoolShape s = pool_shape(x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel, stride, padding);
  auto y = empty<T>({x.shape(0), x.shape(1), s.OH, s.OW});
  const T* px = x.data();
  T* py = y.mutable_data();
  {
    py::gil_scoped_release release;
    avg_pool2d_forward<T>(py, px, s);
  }
  return y;
}

template <class T>
py::array avg_backward_impl(const py::handle& dy_obj, const std::vector<index_t>& shape, const Pair& kernel,
                            const Pair& stride, const Pair& padding) {
  const auto sh = input_shape(shape);
  const PoolShape s = pool_shape(sh[0], sh[1], sh[2], sh[3], kernel, stride, padding);
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, {sh[0], sh[1], s.OH, s.OW}, "dy");
  auto dx = empty<T>({sh[0], sh[1], sh[2], sh[3]});
  T* pdx = dx.mutable_data();
  const T* pdy = dy.data();
  {
    py::gil_scoped_release release;
    avg_pool2d_backward<T>(pdx, pdy, s);
  }
  return dx;
}

template <class T>
py::array global_forward_impl(const py::handle& x_obj) {
  auto x = in<T>(x_obj, "x");
  check_x4(x, "x");
  const index_t N = x.shape(0), C = x.shape(1), HW = x.shape(2) * x.shape(3);
  if (HW == 0) value_error("x", "a non-empty spatial size", "shape " + shape_str(x));
  auto y = empty<T>({N, C});
  const T* px = x.data();
  T* py = y.mutable_data();
  {
    py::gil_scoped_release release;
    global_avg_pool2d_forward<T>(py, px, N * C, HW);
  }
  return y;
}

template <class T>
py::array global_backward_impl(const py::handle& dy_obj, const std::vector<index_t>& shape) {
  const auto sh = input_shape(shape);  // checked: the product fits
  const index_t HW = sh[2] * sh[3];
  if (HW == 0) value_error("input_shape", "a non-empty spatial size", shape4(sh[0], sh[1], sh[2], sh[3]));
  auto dy = in<T>(dy_obj, "dy");
  check_shape(dy, {sh[0], sh[1]}, "dy");
  auto dx = empty<T>({sh[0], sh[1], sh[2], sh[3]});
  T* pdx = dx.mutable_data();
  const T* pdy = dy.data();
  {
    py::gil_scoped_release release;
    global_avg_pool2d_backward<T>(pdx, pdy, sh[0] * sh[1], HW);
  }
  return dx;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def(
      "conv2d_forward",
      [](const py::handle& x, const py::handle& weight, const py::handle& bias, const Pair& stride,
         const Pair& padding, const Pair& dilation, index_t groups, const std::string& activation) {
        return dispatch_float(x, "x", [&](auto t) {
          return conv_forward_impl<decltype(t)>(x, weight, bias, stride, padding, dilation, groups, activation);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("activation") = "none",
      "y = act(conv2d(x, weight) + bias): x (N,C,H,W), weight (OC,C/groups,KH,KW), bias (OC,) or None.");
  m.def(
      "conv2d_backward",
      [](const py::handle& dy, const py::handle& x, const py::handle& weight, const Pair& stride, const Pair& padding,
         const Pair& dilation, index_t groups, const py::handle& dweight, const py::handle& dbias, bool need_dx,
         bool need_dweight, bool need_dbias) {
        return dispatch_float(x, "x", [&](auto t) {
          return conv_backward_impl<decltype(t)>(dy, x, weight, stride, padding, dilation, groups, dweight, dbias,
                                                 need_dx, need_dweight, need_dbias);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("dweight") = py::none(), py::arg("dbias") = py::none(), py::arg("need_dx") = true,
      py::arg("need_dweight") = true, py::arg("need_dbias") = true,
      "(dx, dweight, dbias): dx new; dweight/dbias ADDED into the given arrays (new zeros if None); "
      "None for what is not needed.");
  m.def(
      "max_pool2d_forward",
      [](const py::handle& x, const Pair& kernel, const Pair& stride, const Pair& padding) {
        return dispatch_float(x, "x", [&](auto t) { return max_forward_impl<decltype(t)>(x, kernel, stride, padding); });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      "(y, indices): window max and the int32 flat index (ih*W+iw) of each max in its plane.");
  m.def(
      "max_pool2d_backward",
      [](const py::handle& dy, const py::handle& indices, const std::vector<index_t>& input_shape, const Pair& kernel,
         const Pair& stride, const Pair& padding) {
        return dispatch_float(dy, "dy", [&](auto t) {
          return max_backward_impl<decltype(t)>(dy, indices, input_shape, kernel, stride, padding);
        });
      },
      py::arg("dy"), py::arg("indices"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding"));
  m.def(
      "avg_pool2d_forward",
      [](const py::handle& x, const Pair& kernel, const Pair& stride, const Pair& padding) {
        return dispatch_float(x, "x", [&](auto t) { return avg_forward_impl<decltype(t)>(x, kernel, stride, padding); });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));
  m.def(
      "avg_pool2d_backward",
      [](const py::handle& dy, const std::vector<index_t>& input_shape, const Pair& kernel, const Pair& stride,
         const Pair& padding) {
        return dispatch_float(dy, "dy", [&](auto t) {
          return avg_backward_impl<decltype(t)>(dy, input_shape, kernel, stride, padding);
        });
      },
      py::arg("dy"), py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"));
  m.def(
      "global_avg_pool2d_forward",
      [](const py::handle& x) {
        return dispatch_float(x, "x", [&](auto t) { return global_forward_impl<decltype(t)>(x); });
      },
      py::arg("x"));
  m.def(
      "global_avg_pool2d_backward",
      [](const py::handle& dy, const std::vector<index_t>& input_shape) {
        return dispatch_float(dy, "dy", [&](auto t) { return global_backward_impl<decltype(t)>(dy, input_shape); });
      },
      py::arg("dy"), py::arg("input_shape"));
}

}  // namespace gk::bind
