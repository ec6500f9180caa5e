// Helpers shared by every binding file: argument validation with clear
// messages, dtype dispatch, and array allocation. Validation happens here,
// before the GIL is released; kernels below never see a bad argument.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "gradkit/common.h"

namespace py = pybind11;

namespace gk::bind {

// One function per area; module.cpp calls each.
void bind_core(py::module_& m);
void bind_gemm(py::module_& m);
void bind_eltwise(py::module_& m);
void bind_norm(py::module_& m);
void bind_optim(py::module_& m);
void bind_conv(py::module_& m);
void bind_diag(py::module_& m);  // diagnostics (bind_diag.cpp)

template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
constexpr const char* dtype_name() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

inline std::string dtype_str(const py::handle& obj) {
  if (py::isinstance<py::array>(obj)) return py::str(py::reinterpret_borrow<py::array>(obj).dtype());
  return std::string("non-array ") + std::string(py::str(py::type::handle_of(obj).attr("__name__")));
}

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
  os << (a.ndim() == 1 ? ",)" : ")");
  return os.str();
}

inline std::string shape_str(const std::vector<py::ssize_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << (s.size() == 1 ? ",)" : ")");
  return os.str();
}

// ValueError("<name>: expected <expected>, got <got>").
[[noreturn]] inline void value_error(const std::string& name, const std::string& expected, const std::string& got) {
  throw py::value_error(name + ": expected " + expected + ", got " + got);
}

[[noreturn]] inline void type_error(const std::string& name, const std::string& expected, const std::string& got) {
  throw py::type_error(name + ": expected " + expected + ", got " + got);
}

// An input array of dtype T, C-contiguous and aligned (copied once if not).
// Anything that is not an ndarray of exactly dtype T raises TypeError.
template <class T>
carray<T> in(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) type_error(name, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>())) type_error(name, std::string("dtype ") + dtype_name<T>(), dtype_str(obj));
  return carray<T>::ensure(a);  // no copy when already C-contiguous and aligned
}

// An output or in-place buffer: an ndarray of dtype T, C-contiguous, aligned and
// writeable. Never copied (a copy would silently drop the result).
template <class T>
carray<T> out(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) type_error(name, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>())) type_error(name, std::string("dtype ") + dtype_name<T>(), dtype_str(obj));
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_)) value_error(name, "a C-contiguous array", "a non-contiguous one");
  if (!(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) value_error(name, "an aligned array", "a misaligned one");
  if (!a.writeable()) value_error(name, "a writeable array", "a read-only one");
  return py::reinterpret_borrow<carray<T>>(a);
}

inline void check_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  if (a.ndim() != ndim) {
    value_error(name, std::to_string(ndim) + "-D array", std::to_string(a.ndim()) + "-D array of shape " + shape_str(a));
  }
}

inline void check_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok) value_error(name, "shape " + shape_str(shape), "shape " + shape_str(a));
}

// Calls f(T{}) with T = float or double from the dtype of `obj`; TypeError otherwise.
template <class F>
decltype(auto) dispatch_float(const py::handle& obj, const char* name, F&& f) {
  if (py::isinstance<py::array>(obj)) {
    auto dt = py::reinterpret_borrow<py::array>(obj).dtype();
    if (dt.is(py::dtype::of<float>())) return f(float{});
    if (dt.is(py::dtype::of<double>())) return f(double{});
  }
  type_error(name, "a numpy.ndarray of float32 or float64", dtype_str(obj));
}

template <class T>
carray<T> empty(const std::vector<py::ssize_t>& shape) {
  return carray<T>(shape);
}

}  // namespace gk::bind
