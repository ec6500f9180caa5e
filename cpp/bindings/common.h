// Helpers shared by every binding file: argument validation with clear
// messages, dtype dispatch, and array allocation. Validation happens here,
// before the GIL is released; kernels below never see a bad argument.
// Each argument is checked once: scalar hyper-parameters (stride, eps, p, ...)
// by the Python layer (gradkit/_checks.py, in gk.ops or a layer's constructor),
// arrays (dtype, rank, shapes against each other, sizes that could overflow)
// here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
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
void bind_data(py::module_& m);
void bind_diag(py::module_& m);  // diagnostics (bind_diag.cpp)

template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, double>) return "float64";
  if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  if constexpr (std::is_same_v<T, std::uint8_t>) return "uint8";
  return "an unnamed dtype";
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

// True when `dt` is T's dtype: NumPy's builtin descriptor or one equal to it (an array
// unpickled, e.g. from a worker process, carries its own copy of the descriptor).
template <class T>
bool is_dtype(const py::dtype& dt) {
  const py::dtype want = py::dtype::of<T>();
  return dt.is(want) || dt.equal(want);
}

template <class T>
bool is_array_of(const py::handle& obj) {
  return py::isinstance<py::array>(obj) && is_dtype<T>(py::reinterpret_borrow<py::array>(obj).dtype());
}

// An input array of dtype T, C-contiguous and aligned (copied once if not).
// Anything that is not an ndarray of exactly dtype T raises TypeError.
template <class T>
carray<T> in(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) type_error(name, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!is_dtype<T>(a.dtype())) type_error(name, std::string("dtype ") + dtype_name<T>(), dtype_str(obj));
  // ensure() copies a non-contiguous array but keeps a misaligned contiguous one as it is:
  // reading that as T is undefined behaviour (UBSan reports it), so it is copied here.
  if (!(py::detail::array_proxy(a.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
    a = a.attr("copy")();
  }
  return carray<T>::ensure(a);  // no copy when already C-contiguous and aligned
}

// An output or in-place buffer: an ndarray of dtype T, C-contiguous, aligned and
// writeable. Never copied (a copy would silently drop the result).
template <class T>
carray<T> out(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) type_error(name, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(obj));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!is_dtype<T>(a.dtype())) type_error(name, std::string("dtype ") + dtype_name<T>(), dtype_str(obj));
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

// Sizes computed from user arguments (padding, dilation, input_shape, ...) are checked, never
// wrapped: a + b and a * b of non-negative sizes, ValueError naming `name` past 2**63 - 1.
inline index_t add_size(index_t a, index_t b, const char* name, const std::string& what) {
  index_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    value_error(name, what + " below 2**63", std::to_string(a) + " + " + std::to_string(b));
  }
  return r;
}

inline index_t mul_size(index_t a, index_t b, const char* name, const std::string& what) {
  index_t r;
  if (__builtin_mul_overflow(a, b, &r)) {
    value_error(name, what + " below 2**63", std::to_string(a) + " * " + std::to_string(b));
  }
  return r;
}

// A shape to allocate, from user sizes: its byte count must fit NumPy's limit (2**63 - 1),
// else ValueError naming `name` (rather than NumPy's "array is too big" naming nothing).
inline void check_alloc(const std::vector<py::ssize_t>& shape, index_t itemsize, const char* name) {
  index_t bytes = itemsize;
  bool zero = false;
  bool over = false;
  for (py::ssize_t d : shape) {
    zero = zero || d == 0;
    over = over || (d != 0 && __builtin_mul_overflow(bytes, d, &bytes));
  }
  if (over && !zero) value_error(name, "an array shape of fewer than 2**63 bytes", "shape " + shape_str(shape));
  if (over) value_error(name, "sizes whose product is below 2**63", "shape " + shape_str(shape));
}

// Calls f(T{}) with T = float or double from the dtype of `obj`; TypeError otherwise.
template <class F>
decltype(auto) dispatch_float(const py::handle& obj, const char* name, F&& f) {
  if (py::isinstance<py::array>(obj)) {
    auto dt = py::reinterpret_borrow<py::array>(obj).dtype();
    if (is_dtype<float>(dt)) return f(float{});
    if (is_dtype<double>(dt)) return f(double{});
  }
  type_error(name, "a numpy.ndarray of float32 or float64", dtype_str(obj));
}

template <class T>
carray<T> empty(const std::vector<py::ssize_t>& shape) {
  return carray<T>(shape);
}

}  // namespace gk::bind
