// Optimizer steps and gradient clipping over lists of arrays (gradkit.optim).
#include <cmath>
#include <string>
#include <type_traits>

#include "common.h"
#include "gradkit/optim.h"

namespace gk::bind {

namespace {

// The rules and their slots come from the one list of gradkit/optim.h (kOptimRules).
const char* kind_name(OptimKind k) { return kOptimRules[static_cast<int>(k)].kind; }
const char* slot_name(const OptimHyper& h, int k) { return kOptimRules[static_cast<int>(h.kind)].slot[k]; }

OptimKind parse_kind(const std::string& kind) {
  std::string names;
  for (int k = 0; k < kNumOptimKinds; ++k) {
    if (kind == kOptimRules[k].kind) return static_cast<OptimKind>(k);
    names += std::string(k > 0 ? ", '" : "'") + kOptimRules[k].kind + "'";
  }
  value_error("kind", "one of " + names, "'" + kind + "'");
}

// OptimHyper's fields by name (GK_OPTIM_HYPER_FIELDS): set one from a Python value, and repr.
template <class T>
T hyper_value(const py::handle& value, const char* name) {
  py::detail::make_caster<T> c;
  if (!c.load(value, true)) {
    type_error(std::string("OptimHyper: ") + name, std::is_same_v<T, bool> ? "a bool" : "a real number",
               py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
  }
  return py::detail::cast_op<T>(c);
}
bool set_hyper_field(OptimHyper& h, const std::string& key, const py::handle& value) {
#define GK_SET_FIELD(type, name, doc)              \
  if (key == #name) {                              \
    h.name = hyper_value<type>(value, #name);      \
    return true;                                   \
  }
  GK_OPTIM_HYPER_FIELDS(GK_SET_FIELD)
#undef GK_SET_FIELD
  return false;
}
std::string repr_of(double v) { return py::repr(py::float_(v)).cast<std::string>(); }
std::string repr_of(bool v) { return v ? "True" : "False"; }

std::string item(const std::string& name, size_t i) { return name + "[" + std::to_string(i) + "]"; }

// Everything one call needs, grouped by dtype; `keep` holds grads copied to contiguous.
struct Lists {
  TensorList<float> f32;
  TensorList<double> f64;
  std::vector<py::object> keep;
};

// NumPy's builtin descriptor of T (a process-lifetime singleton).
template <class T>
PyObject* builtin_descr() {
  static PyObject* d = py::dtype::of<T>().release().ptr();
  return d;
}

// The quick check done per array on every step (many small tensors make the
// per-array cost matter): an ndarray with T's builtin descriptor, C-contiguous,
// aligned, writeable if asked, of shape (nd, dims). Returns its data or nullptr;
// on nullptr the caller runs the full validation, which raises the right error
// (or accepts an unusual but valid array, e.g. a non-builtin descriptor).
template <class T>
T* quick_array(PyObject* o, int nd, const py::ssize_t* dims, bool writeable) {
  if (!py::detail::npy_api::get().PyArray_Check_(o)) return nullptr;
  const auto* a = py::detail::array_proxy(o);
  using api = py::detail::npy_api;
  const int need = api::NPY_ARRAY_C_CONTIGUOUS_ | api::NPY_ARRAY_ALIGNED_ | (writeable ? api::NPY_ARRAY_WRITEABLE_ : 0);
  if (a->descr != builtin_descr<T>() || (a->flags & need) != need || a->nd != nd) return nullptr;
  for (int d = 0; d < nd; ++d) {
    if (a->dimensions[d] != dims[d]) return nullptr;
  }
  return reinterpret_cast<T*>(a->data);
}

// Full validation of an in-place array of the parameter's dtype and shape (raises on error).
template <class T>
T* checked_inplace(const py::handle& obj, const std::vector<py::ssize_t>& shape, const std::string& name) {
  auto a = out<T>(obj, name.c_str());
  check_shape(a, shape, name.c_str());
  return a.mutable_data();
}

template <class T>
void add_tensor(TensorList<T>& t, std::vector<py::object>& keep, const OptimHyper& h, const bool need[3],
                PyObject* p_obj, PyObject* g_obj, PyObject* const slots[3], const std::string& prefix, size_t i,
                double step) {
  const auto* pa = py::detail::array_proxy(p_obj);  // an ndarray of T: checked by the dtype dispatch
  const int nd = pa->nd;
  const py::ssize_t* dims = pa->dimensions;
  T* p = quick_array<T>(p_obj, nd, dims, true);
  std::vector<py::ssize_t> shape;
  auto full_shape = [&]() -> const std::vector<py::ssize_t>& {
    if (shape.empty() && nd > 0) shape.assign(dims, dims + nd);
    return shape;
  };
  if (p == nullptr) p = checked_inplace<T>(p_obj, full_shape(), item(prefix + "params", i));
  const T* g = quick_array<T>(g_obj, nd, dims, false);
  if (g == nullptr) {
    const std::string gname = item(prefix + "grads", i);
    const py::handle gh(g_obj);
    if (!py::isinstance<py::array>(gh)) type_error(gname, std::string("a numpy.ndarray of ") + dtype_name<T>(), dtype_str(gh));
    auto ga = in<T>(gh, gname.c_str());  // non-contiguous grads are read from a contiguous copy
    check_shape(ga, full_shape(), gname.c_str());
    g = ga.data();
    keep.push_back(ga);
  }
  t.hyper.push_back(&h);
  t.param.push_back(p);
  t.grad.push_back(g);
  for (int k = 0; k < 3; ++k) {
    T* s = nullptr;
    if (need[k]) {
      PyObject* o = PyList_GET_ITEM(slots[k], static_cast<py::ssize_t>(i));
      s = quick_array<T>(o, nd, dims, true);
      if (s == nullptr) s = checked_inplace<T>(o, full_shape(), item(prefix + slot_name(h, k), i));
    }
    t.state[k].push_back(s);
  }
  index_t n = 1;
  for (int d = 0; d < nd; ++d) n *= dims[d];
  t.n.push_back(n);
  t.step.push_back(step);
}

// Validates one param group's lists and appends its tensors to `l`.
void add_group(const OptimHyper& h, const py::list& params, const py::list& grads, const py::object& s0,
               const py::object& s1, const py::object& s2, const std::vector<double>& steps,
               const std::string& prefix, Lists& l) {
  const size_t count = params.size();
  if (grads.size() != count) value_error(prefix + "grads", std::to_string(count) + " arrays", std::to_string(grads.size()));
  if (steps.size() != count) value_error(prefix + "steps", std::to_string(count) + " values", std::to_string(steps.size()));
  bool need[3];
  optim_slots_used(h, need);
  const py::object* objs[3] = {&s0, &s1, &s2};
  PyObject* slots[3] = {nullptr, nullptr, nullptr};
  for (int k = 0; k < 3; ++k) {
    if (!need[k]) continue;
    const std::string name = prefix + slot_name(h, k);
    if (!py::isinstance<py::list>(*objs[k])) value_error(name, "a list of " + std::to_string(count) + " arrays", "None");
    const auto list = py::reinterpret_borrow<py::list>(*objs[k]);
    if (list.size() != count) value_error(name, std::to_string(count) + " arrays", std::to_string(list.size()));
    slots[k] = list.ptr();  // borrowed: the caller's list outlives this call
  }
  for (size_t i = 0; i < count; ++i) {
    if (!(steps[i] >= 1)) value_error(item(prefix + "steps", i), "a step count >= 1", std::to_string(steps[i]));
    PyObject* p = PyList_GET_ITEM(params.ptr(), static_cast<py::ssize_t>(i));
    PyObject* g = PyList_GET_ITEM(grads.ptr(), static_cast<py::ssize_t>(i));
    const bool is_array = py::detail::npy_api::get().PyArray_Check_(p);
    const PyObject* descr = is_array ? py::detail::array_proxy(p)->descr : nullptr;
    if (descr == builtin_descr<float>()) {
      add_tensor<float>(l.f32, l.keep, h, need, p, g, slots, prefix, i, steps[i]);
    } else if (descr == builtin_descr<double>()) {
      add_tensor<double>(l.f64, l.keep, h, need, p, g, slots, prefix, i, steps[i]);
    } else {
      dispatch_float(p, item(prefix + "params", i).c_str(), [&](auto t) {  // an unusual descriptor, or a TypeError
        using T = decltype(t);
        if constexpr (std::is_same_v<T, float>) add_tensor<T>(l.f32, l.keep, h, need, p, g, slots, prefix, i, steps[i]);
        else add_tensor<T>(l.f64, l.keep, h, need, p, g, slots, prefix, i, steps[i]);
      });
    }
  }
}

// One entry of the `groups` list: (hyper, params, grads, state0, state1, state2, steps).
constexpr size_t kGroupFields = 7;

// Every group of an optimizer in one call: all tensors are validated first
// (nothing is updated on an error), then updated in one parallel region per dtype.
void step_impl(const py::list& groups) {
  std::vector<OptimHyper> hypers(groups.size());  // stable addresses for TensorList::hyper
  Lists l;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const std::string prefix = "param_groups[" + std::to_string(gi) + "].";
    const std::string name = "groups[" + std::to_string(gi) + "]";
    const py::handle obj = groups[gi];
    if (!py::isinstance<py::tuple>(obj) || py::len(obj) != kGroupFields) {
      value_error(name, "a tuple (hyper, params, grads, state0, state1, state2, steps)",
                  py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
    }
    const auto t = py::reinterpret_borrow<py::tuple>(obj);
    if (!py::isinstance<OptimHyper>(t[0])) {
      type_error(name + "[0]", "a gradkit._core.OptimHyper", py::str(py::type::handle_of(t[0]).attr("__name__")));
    }
    hypers[gi] = t[0].cast<const OptimHyper&>();
    if (!py::isinstance<py::list>(t[1]) || !py::isinstance<py::list>(t[2])) {
      value_error(prefix + "params", "lists of params and grads", "another type");
    }
    add_group(hypers[gi], py::reinterpret_borrow<py::list>(t[1]), py::reinterpret_borrow<py::list>(t[2]), t[3], t[4],
              t[5], t[6].cast<std::vector<double>>(), prefix, l);
  }
  py::gil_scoped_release release;
  optim_step(l.f32);
  optim_step(l.f64);
}

// Total norm of all arrays (float32 and float64 together); scales them by
// max_norm / (total + 1e-6) when that is below 1. Returns the total.
double clip_impl(const py::list& grads, double max_norm, double norm_type) {
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  if (!inf && norm_type != 2.0) value_error("norm_type", "2.0 or inf", std::to_string(norm_type));
  std::vector<float*> pf;
  std::vector<double*> pd;
  std::vector<index_t> nf, nd;
  for (size_t i = 0; i < grads.size(); ++i) {
    const py::handle g = grads[i];
    const std::string name = item("grads", i);
    dispatch_float(g, name.c_str(), [&](auto t) {
      using T = decltype(t);
      auto a = out<T>(g, name.c_str());
      if constexpr (std::is_same_v<T, float>) {
        pf.push_back(a.mutable_data());
        nf.push_back(a.size());
      } else {
        pd.push_back(a.mutable_data());
        nd.push_back(a.size());
      }
    });
  }
  py::gil_scoped_release release;
  const double a = grad_norm_partial(std::vector<const float*>(pf.begin(), pf.end()), nf, inf);
  const double b = grad_norm_partial(std::vector<const double*>(pd.begin(), pd.end()), nd, inf);
  double total;
  if (inf) total = (std::isnan(a) || std::isnan(b)) ? NAN : std::max(a, b);
  else total = std::sqrt(a + b);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) {
    scale_tensors(pf, nf, static_cast<float>(coef));
    scale_tensors(pd, nd, coef);
  }
  return total;
}

}  // namespace

void bind_optim(py::module_& m) {
  py::class_<OptimHyper> hyper(m, "OptimHyper",
                               "The hyperparameters of one param group's update, by name (PyTorch's meanings; "
                               "the rules and fields are listed in gradkit/optim.h). weight_decay is the coupled L2 "
                               "term except with decoupled (AdamW); l1 adds l1 * sign(p) to the gradient.");
  hyper.def(py::init([](const std::string& kind, const py::kwargs& fields) {
              OptimHyper h;
              h.kind = parse_kind(kind);
              for (const auto& [key, value] : fields) {
                const std::string name = py::str(key);
                if (!set_hyper_field(h, name, value)) {
                  throw py::type_error("OptimHyper: unexpected keyword argument '" + name + "'");
                }
              }
              return h;
            }),
            py::kw_only(), py::arg("kind"),
            "OptimHyper(*, kind, **fields): kind names a rule of gradkit/optim.h ('sgd', 'adam', ...); every "
            "other field is 0 / False unless given.")
      .def_property(
          "kind", [](const OptimHyper& h) { return std::string(kind_name(h.kind)); },
          [](OptimHyper& h, const std::string& kind) { h.kind = parse_kind(kind); }, "the rule's name")
      .def("__repr__", [](const OptimHyper& h) {
        std::string r = "OptimHyper(kind='" + std::string(kind_name(h.kind)) + "'";
#define GK_FIELD_REPR(type, name, doc) r += ", " #name "=" + repr_of(h.name);
        GK_OPTIM_HYPER_FIELDS(GK_FIELD_REPR)
#undef GK_FIELD_REPR
        return r + ")";
      });
#define GK_FIELD_PROPERTY(type, name, doc) hyper.def_readwrite(#name, &OptimHyper::name, doc);
  GK_OPTIM_HYPER_FIELDS(GK_FIELD_PROPERTY)
#undef GK_FIELD_PROPERTY
  m.def("optim_step", &step_impl, py::arg("groups"),
        "One optimizer update of every param group in place: groups is a list of tuples (hyper, params, grads, "
        "state0, state1, state2, steps) with hyper an OptimHyper. state0..2 are lists of arrays (or None) in the "
        "slots of gradkit/optim.h; steps[i] is tensor i's step count after this update (SGD: 1 when its momentum "
        "buffer is new). All arrays are validated before any is updated; float32 and float64 may be mixed; all "
        "tensors of all groups are updated in one parallel region per dtype.");
  m.def("clip_grad_norm", &clip_impl, py::arg("grads"), py::arg("max_norm"), py::arg("norm_type") = 2.0,
        "Total norm (2 or inf) of all arrays, accumulated in double; scales them in place by "
        "max_norm / (total + 1e-6) when that is below 1. Returns the total before clipping.");
}

}  // namespace gk::bind
