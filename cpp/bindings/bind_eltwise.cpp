// Activations, dropout and losses: validation, then the kernels without the GIL.
#include <cmath>
#include <cstdint>
#include <string>

#include "common.h"
#include "gradkit/eltwise.h"
#include "gradkit/loss.h"

namespace gk::bind {

namespace {

// An output buffer for a result shaped like `like`: a new array when obj is
// None, else obj checked (dtype, shape, contiguous, writeable). It may be one
// of the inputs exactly (in place) but not partially overlap them.
template <class T>
carray<T> result_like(const py::handle& obj, const carray<T>& like, const char* name,
                      std::initializer_list<const py::array*> inputs) {
  if (obj.is_none()) {
    std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
    return carray<T>(shape);
  }
  carray<T> o = out<T>(obj, name);
  std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
  check_shape(o, shape, name);
  const char* o0 = reinterpret_cast<const char*>(o.data());
  const char* o1 = o0 + o.nbytes();
  for (const py::array* in_arr : inputs) {
    const char* a0 = static_cast<const char*>(in_arr->data());
    const char* a1 = a0 + in_arr->nbytes();
    if (a0 != o0 && o0 < a1 && a0 < o1) value_error(name, "the input array itself or memory not shared with the inputs", "a partially overlapping array");
  }
  return o;
}

template <class T>
py::array act_forward_impl(Act act, const py::handle& x_obj, const py::handle& out_obj, double alpha) {
  carray<T> x = in<T>(x_obj, "x");
  carray<T> y = result_like<T>(out_obj, x, "out", {&x});
  const T* px = x.data();
  T* py_ = y.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release release;
    act_forward<T>(act, py_, px, n, static_cast<T>(alpha), 0);
  }
  return y;
}

template <class T>
py::array act_backward_impl(Act act, const py::handle& dy_obj, const py::handle& s_obj, const py::handle& out_obj,
                            double alpha) {
  const char* sname = act_backward_from_output(act) ? "y" : "x";
  carray<T> dy = in<T>(dy_obj, "dy");
  carray<T> s = in<T>(s_obj, sname);
  std::vector<py::ssize_t> shape(s.shape(), s.shape() + s.ndim());
  check_shape(dy, shape, "dy");
  carray<T> dx = result_like<T>(out_obj, dy, "out", {&dy, &s});
  const T* pdy = dy.data();
  const T* ps = s.data();
  T* pdx = dx.mutable_data();
  const index_t n = dy.size();
  {
    py::gil_scoped_release release;
    act_backward<T>(act, pdx, pdy, ps, n, static_cast<T>(alpha), 0);
  }
  return dx;
}

template <class T>
py::tuple dropout_forward_impl(const py::handle& x_obj, double p) {
  carray<T> x = in<T>(x_obj, "x");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  carray<T> y(shape);
  const index_t n = x.size();
  carray<std::uint8_t> mask({static_cast<py::ssize_t>(ceil_div(n, 8))});
  const T* px = x.data();
  T* py_ = y.mutable_data();
  std::uint8_t* pm = mask.mutable_data();
  {
    py::gil_scoped_release release;
    dropout_forward<T>(py_, pm, px, n, p, 0);
  }
  return py::make_tuple(y, mask);
}

template <class T>
py::array dropout_backward_impl(const py::handle& dy_obj, const py::handle& mask_obj, double p) {
  carray<T> dy = in<T>(dy_obj, "dy");
  if (!is_array_of<std::uint8_t>(mask_obj)) {
    type_error("mask", "a numpy.ndarray of uint8 (from dropout_forward)", dtype_str(mask_obj));
  }
  auto mask = carray<std::uint8_t>::ensure(py::reinterpret_borrow<py::array>(mask_obj));
  const index_t n = dy.size();
  check_shape(mask, {static_cast<py::ssize_t>(ceil_div(n, 8))}, "mask");
  std::vector<py::ssize_t> shape(dy.shape(), dy.shape() + dy.ndim());
  carray<T> dx(shape);
  const T* pdy = dy.data();
  const std::uint8_t* pm = mask.data();
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release release;
    dropout_backward<T>(pdx, pdy, pm, n, p, 0);
  }
  return dx;
}

template <class T>
py::tuple cross_entropy_impl(const py::handle& logits_obj, const py::handle& labels_obj, double label_smoothing,
                             bool grad) {
  carray<T> logits = in<T>(logits_obj, "input");
  check_ndim(logits, 2, "input");
  const index_t N = logits.shape(0), C = logits.shape(1);
  if (!is_array_of<std::int64_t>(labels_obj)) {
    type_error("target", "a numpy.ndarray of int64 class indices", dtype_str(labels_obj));
  }
  auto labels = carray<std::int64_t>::ensure(py::reinterpret_borrow<py::array>(labels_obj));
  check_shape(labels, {static_cast<py::ssize_t>(N)}, "target");
  if (C < 1 && N > 0) value_error("input", "at least one class (C >= 1)", "shape " + shape_str(logits));
  const std::int64_t* pl = labels.data();
  for (index_t i = 0; i < N; ++i) {
    if (pl[i] < 0 || pl[i] >= C) {
      value_error("target", "class indices in [0, " + std::to_string(C) + ") (C = " + std::to_string(C) + ")",
                  "label " + std::to_string(pl[i]) + " at index " + std::to_string(i));
    }
  }
  carray<T> dlogits;
  T* pd = nullptr;
  if (grad) {
    dlogits = carray<T>({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(C)});
    pd = dlogits.mutable_data();
  }
  const T* px = logits.data();
  double loss;
  {
    py::gil_scoped_release release;
    loss = cross_entropy_forward<T>(pd, px, pl, N, C, label_smoothing, 0);
  }
  return py::make_tuple(loss, grad ? py::object(dlogits) : py::none());
}

template <class T>
py::tuple mse_impl(const py::handle& x_obj, const py::handle& t_obj, bool grad) {
  carray<T> x = in<T>(x_obj, "input");
  carray<T> t = in<T>(t_obj, "target");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  check_shape(t, shape, "target");
  carray<T> d;
  T* pd = nullptr;
  if (grad) {
    d = carray<T>(shape);
    pd = d.mutable_data();
  }
  const T* px = x.data();
  const T* pt = t.data();
  const index_t n = x.size();
  double loss;
  {
    py::gil_scoped_release release;
    loss = mse_forward<T>(pd, px, pt, n, 0);
  }
  return py::make_tuple(loss, grad ? py::object(d) : py::none());
}

}  // namespace

void bind_eltwise(py::module_& m) {
  for (int a = 0; a < kNumAct; ++a) {
    const Act act = static_cast<Act>(a);
    const std::string name = act_name(act);
    const char* saved = act_backward_from_output(act) ? "y" : "x";
    m.def(
        (name + "_forward").c_str(),
        [act](const py::handle& x, const py::handle& out, double alpha) {
          return dispatch_float(x, "x", [&](auto t) { return act_forward_impl<decltype(t)>(act, x, out, alpha); });
        },
        py::arg("x"), py::arg("out") = py::none(), py::arg("alpha") = 0.0,
        (name + "(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).").c_str());
    m.def(
        (name + "_backward").c_str(),
        [act](const py::handle& dy, const py::handle& s, const py::handle& out, double alpha) {
          return dispatch_float(dy, "dy",
                                [&](auto t) { return act_backward_impl<decltype(t)>(act, dy, s, out, alpha); });
        },
        py::arg("dy"), py::arg(saved), py::arg("out") = py::none(), py::arg("alpha") = 0.0,
        ("d " + name + " / dx from dy and the saved " + (act_backward_from_output(act) ? "output" : "input")).c_str());
  }
  m.def(
      "dropout_forward",
      [](const py::handle& x, double p) {
        return dispatch_float(x, "x", [&](auto t) { return dropout_forward_impl<decltype(t)>(x, p); });
      },
      py::arg("x"), py::arg("p"), "Inverted dropout: (y, packed uint8 keep-mask).");
  m.def(
      "dropout_backward",
      [](const py::handle& dy, const py::handle& mask, double p) {
        return dispatch_float(dy, "dy", [&](auto t) { return dropout_backward_impl<decltype(t)>(dy, mask, p); });
      },
      py::arg("dy"), py::arg("mask"), py::arg("p"), "dx = dy * mask / (1 - p).");
  m.def(
      "cross_entropy",
      [](const py::handle& input, const py::handle& target, double label_smoothing, bool grad) {
        return dispatch_float(input, "input", [&](auto t) {
          return cross_entropy_impl<decltype(t)>(input, target, label_smoothing, grad);
        });
      },
      py::arg("input"), py::arg("target"), py::arg("label_smoothing") = 0.0, py::arg("grad") = true,
      "Softmax cross-entropy, mean over rows: (loss, dinput or None).");
  m.def(
      "mse",
      [](const py::handle& input, const py::handle& target, bool grad) {
        return dispatch_float(input, "input", [&](auto t) { return mse_impl<decltype(t)>(input, target, grad); });
      },
      py::arg("input"), py::arg("target"), py::arg("grad") = true, "Mean squared error: (loss, dinput or None).");
}

}  // namespace gk::bind
