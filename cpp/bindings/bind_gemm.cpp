// gemm: C = alpha * op(A) op(B) + beta * C with a bias/activation epilogue.
#include <string>

#include "common.h"
#include "gradkit/gemm.h"

namespace gk::bind {

namespace {

struct Strided {
  py::array arr;  // keeps the (possibly copied) data alive
  index_t rows, cols, rs, cs;
};

// A 2-D input of dtype T as (rows, cols, row stride, col stride) in elements,
// transposed if asked. Strided and Fortran-order views are used in place;
// only strides that are not a multiple of the item size force a copy.
template <class T>
Strided strided_2d(const py::handle& obj, const char* name, bool trans) {
  if (!py::isinstance<py::array>(obj)) type_error(name, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!is_dtype<T>(a.dtype())) type_error(name, std::string("dtype ") + dtype_name<T>(), dtype_str(obj));
  check_ndim(a, 2, name);
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  const bool aligned = (reinterpret_cast<std::uintptr_t>(a.data()) % sizeof(T)) == 0;
  if (!aligned || a.strides(0) % item != 0 || a.strides(1) % item != 0) a = in<T>(a, name);  // an aligned copy
  Strided s{a, a.shape(0), a.shape(1), a.strides(0) / item, a.strides(1) / item};
  if (trans) {
    std::swap(s.rows, s.cols);
    std::swap(s.rs, s.cs);
  }
  return s;
}

// [first, last) bytes touched by an array (for the overlap check).
std::pair<const char*, const char*> extent(const py::array& a) {
  const char* lo = static_cast<const char*>(a.data());
  const char* hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const py::ssize_t span = (a.shape(d) - 1) * a.strides(d);
    if (span < 0) lo += span; else hi += span;
  }
  return {lo, hi + a.itemsize()};
}

bool may_overlap(const py::array& x, const py::array& y) {
  auto [x0, x1] = extent(x);
  auto [y0, y1] = extent(y);
  return x0 < x1 && y0 < y1 && x0 < y1 && y0 < x1;
}

// A new (M, N) result; beta must be 0 (there is no C to scale).
template <class T>
carray<T> new_out(double beta, index_t M, index_t N) {
  if (beta != 0.0) value_error("beta", "0 when out is None", std::to_string(beta));
  return empty<T>({M, N});
}

// The caller's out array, checked for dtype, layout and shape (M, N).
template <class T>
carray<T> checked_out(const py::handle& out_obj, index_t M, index_t N) {
  carray<T> C = out<T>(out_obj, "out");
  if (C.ndim() != 2 || C.shape(0) != M || C.shape(1) != N) check_shape(C, {M, N}, "out");
  return C;
}

template <class T>
py::array gemm_impl(const py::handle& a_obj, const py::handle& b_obj, bool trans_a, bool trans_b,
                    const py::handle& out_obj, double alpha, double beta, const py::handle& bias_obj,
                    bool bias_per_row, const std::string& activation) {
  Strided A = strided_2d<T>(a_obj, "a", trans_a);
  if (py::isinstance<py::array>(b_obj) && !is_array_of<T>(b_obj)) {
    type_error("b", std::string("dtype ") + dtype_name<T>() + " (the dtype of a)", dtype_str(b_obj));
  }
  Strided B = strided_2d<T>(b_obj, "b", trans_b);
  if (A.cols != B.rows) {
    value_error("b", "op(b) with " + std::to_string(A.cols) + " rows to match op(a) of shape (" +
                         std::to_string(A.rows) + ", " + std::to_string(A.cols) + ")",
                "op(b) of shape (" + std::to_string(B.rows) + ", " + std::to_string(B.cols) + ")");
  }
  const index_t M = A.rows, N = B.cols, K = A.cols;
  Activation act;
  if (activation == "none") act = Activation::none;
  else if (activation == "relu") act = Activation::relu;
  else value_error("activation", "'none' or 'relu'", "'" + activation + "'");

  // Never default-construct a carray here: that allocates an empty NumPy array,
  // which costs more than a 64^3 call's validation (two of them cost ~0.3 us).
  carray<T> C = out_obj.is_none() ? new_out<T>(beta, M, N) : checked_out<T>(out_obj, M, N);
  if (!out_obj.is_none()) {
    if (may_overlap(C, A.arr)) value_error("out", "memory not shared with a", "an array overlapping a");
    if (may_overlap(C, B.arr)) value_error("out", "memory not shared with b", "an array overlapping b");
  }
  py::object bias_ref;  // keeps a copied bias alive until the kernel is done
  GemmEpilogue<T> ep;
  if (!bias_obj.is_none()) {
    carray<T> bias = in<T>(bias_obj, "bias");
    check_shape(bias, {bias_per_row ? M : N}, "bias");
    if (!out_obj.is_none() && may_overlap(C, bias)) value_error("out", "memory not shared with bias", "an array overlapping bias");
    ep.bias = bias.data();
    ep.bias_per_row = bias_per_row;
    bias_ref = std::move(bias);
  }
  ep.act = act;
  const T* pa = static_cast<const T*>(A.arr.data());
  const T* pb = static_cast<const T*>(B.arr.data());
  T* pc = C.mutable_data();
  {
    py::gil_scoped_release release;
    gemm<T>(M, N, K, static_cast<T>(alpha), pa, A.rs, A.cs, pb, B.rs, B.cs, static_cast<T>(beta), pc, N, ep);
  }
  return C;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](const py::handle& a, const py::handle& b, bool trans_a, bool trans_b, const py::handle& out, double alpha,
         double beta, const py::handle& bias, bool bias_per_row, const std::string& activation) {
        return dispatch_float(a, "a", [&](auto t) {
          return gemm_impl<decltype(t)>(a, b, trans_a, trans_b, out, alpha, beta, bias, bias_per_row, activation);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("out") = py::none(),
      py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_per_row") = false,
      py::arg("activation") = "none",
      "out = act(alpha * op(a) @ op(b) + beta * out + bias). op(x) = x.T when trans_x. "
      "bias has one value per column of out (or per row with bias_per_row).");
}

}  // namespace gk::bind
