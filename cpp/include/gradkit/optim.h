// Optimizer updates (SGD, Adagrad, RMSprop, Adam/AdamW) and gradient clipping
// over many tensors in one call ("multi-tensor apply").
//
// The driver takes lists of (param, grad, state...) pointers of one dtype,
// splits their total element count over the threads (work balanced across
// tensors, one parallel region per call) and runs the per-ISA kernel on each
// piece. Every update is one pass over memory per element. Per-tensor scalars
// that depend on the step count (bias corrections, Adagrad's decayed lr) are
// computed in double by the driver.
#pragma once
#include <cmath>
#include <vector>

#include "gradkit/common.h"
#include "gradkit/isa.h"

namespace gk {

// ---- The optimizer rules: the one list (docs/design.md, "Adding an optimizer") ----------
//
// One row per rule, X(kind, slot0, uses0, slot1, uses1, slot2, uses2): its name (the Python
// class's _kind; its kernel is `kind`_kernel in cpp/optim/optim_impl.h), then its three state
// slots, each a name (PyTorch's state key; "" for none) and when an update with the
// hyperparameters `h` reads and writes it. OptimKind, the per-ISA kernel tables and the
// binding's kind names, slot checks and messages are generated from it.
#define GK_OPTIM_RULES(X)                                                                    \
  X(sgd, "momentum_buffer", h.momentum != 0, "", false, "", false)                           \
  X(adagrad, "sum", true, "", false, "", false)                                              \
  X(rmsprop, "square_avg", true, "momentum_buffer", h.momentum > 0, "grad_avg", h.centered)  \
  X(adam, "exp_avg", true, "exp_avg_sq", true, "max_exp_avg_sq", h.amsgrad)

// The hyperparameters of one param group, X(type, name, doc) (PyTorch's names and meanings):
// the fields of OptimHyper (zero or false unless set), which the binding takes by name.
// weight_decay is the coupled L2 term (g += weight_decay * p) except for AdamW (decoupled:
// p *= 1 - lr * weight_decay first); l1 adds l1 * sign(p) to g.
#define GK_OPTIM_HYPER_FIELDS(X)                                               \
  X(double, lr, "learning rate")                                               \
  X(double, weight_decay, "L2 term added to the gradient (AdamW: decoupled)")  \
  X(double, l1, "adds l1 * sign(p) to the gradient")                           \
  X(double, eps, "added to the denominator")                                   \
  X(double, momentum, "SGD and RMSprop")                                       \
  X(double, dampening, "SGD")                                                  \
  X(bool, nesterov, "SGD")                                                     \
  X(double, alpha, "RMSprop's smoothing constant")                             \
  X(bool, centered, "RMSprop")                                                 \
  X(double, lr_decay, "Adagrad")                                               \
  X(double, beta1, "Adam")                                                     \
  X(double, beta2, "Adam")                                                     \
  X(bool, amsgrad, "Adam")                                                     \
  X(bool, decoupled, "Adam: AdamW's decoupled weight decay")

enum class OptimKind : int {
#define GK_OPTIM_KIND(kind, ...) kind,
  GK_OPTIM_RULES(GK_OPTIM_KIND)
#undef GK_OPTIM_KIND
};
#define GK_OPTIM_COUNT(...) +1
constexpr int kNumOptimKinds = 0 GK_OPTIM_RULES(GK_OPTIM_COUNT);
#undef GK_OPTIM_COUNT

struct OptimHyper {
  OptimKind kind = OptimKind::sgd;
#define GK_OPTIM_FIELD(type, name, doc) type name = type();
  GK_OPTIM_HYPER_FIELDS(GK_OPTIM_FIELD)
#undef GK_OPTIM_FIELD
};

// Each rule's name and state slot names ("" for none), in OptimKind order.
struct OptimRuleNames {
  const char* kind;
  const char* slot[3];
};
inline constexpr OptimRuleNames kOptimRules[kNumOptimKinds] = {
#define GK_OPTIM_NAMES(kind, s0, u0, s1, u1, s2, u2) {#kind, {s0, s1, s2}},
    GK_OPTIM_RULES(GK_OPTIM_NAMES)
#undef GK_OPTIM_NAMES
};

// Which state slots the update of h reads and writes.
inline void optim_slots_used(const OptimHyper& h, bool used[3]) {
  switch (h.kind) {
#define GK_OPTIM_USES(kind, s0, u0, s1, u1, s2, u2) \
  case OptimKind::kind:                             \
    used[0] = (u0);                                 \
    used[1] = (u1);                                 \
    used[2] = (u2);                                 \
    return;
    GK_OPTIM_RULES(GK_OPTIM_USES)
#undef GK_OPTIM_USES
  }
}

// Scalars of one tensor's update at its step count, computed in double by the driver.
struct OptimStepScalars {
  double lr = 0;        // Adagrad: lr / (1 + (step-1) lr_decay); Adam: lr / (1 - beta1^step); else lr
  double bc2_sqrt = 1;  // Adam: sqrt(1 - beta2^step)
  bool first = false;   // SGD: the momentum buffer is new (buf = g, no dampening)
};

// The scalars of an update at `step` (the step count after it, >= 1). A rule whose update
// does not depend on the step count needs no case here.
inline OptimStepScalars optim_step_scalars(const OptimHyper& h, double step) {
  OptimStepScalars s;
  s.lr = h.lr;
  switch (h.kind) {
    case OptimKind::sgd:
      s.first = step <= 1;
      break;
    case OptimKind::adagrad:
      s.lr = h.lr / (1 + (step - 1) * h.lr_decay);
      break;
    case OptimKind::adam:
      s.lr = h.lr / (1 - std::pow(h.beta1, step));
      s.bc2_sqrt = std::sqrt(1 - std::pow(h.beta2, step));
      break;
    default:
      break;
  }
  return s;
}

// A rule's kernel updates n elements: p and the state slots of GK_OPTIM_RULES (nullptr when
// unused) in place from g.
template <class T>
using OptimKernel = void (*)(const OptimHyper& h, const OptimStepScalars& s, T* p, const T* g, T* s0, T* s1, T* s2,
                             index_t n);
// Sum of squares in double / max |x| (NaN if any x is NaN) / x *= c.
template <class T>
using SumSqKernel = double (*)(const T* x, index_t n);
template <class T>
using AbsMaxKernel = double (*)(const T* x, index_t n);
template <class T>
using ScaleKernel = void (*)(T* x, T c, index_t n);

template <class T>
struct OptimKernels {
  OptimKernel<T> step[kNumOptimKinds] = {};
  SumSqKernel<T> sumsq = nullptr;
  AbsMaxKernel<T> absmax = nullptr;
  ScaleKernel<T> scale = nullptr;
};

using OptimTable = DtypeTable<OptimKernels>;
GK_DECLARE_DISPATCH(optim, OptimTable)

// The tensors of one call, all of dtype T; entry i is one parameter of n[i]
// elements, updated with the hyperparameters *hyper[i] (its param group's).
template <class T>
struct TensorList {
  std::vector<const OptimHyper*> hyper;
  std::vector<T*> param;
  std::vector<const T*> grad;
  std::vector<T*> state[3];   // one list per slot; nullptr entries for unused slots
  std::vector<index_t> n;
  std::vector<double> step;   // the step count after this update (1 on the first step)
  size_t size() const { return param.size(); }
};

// Applies one update to every tensor (all groups in one parallel region).
// nthreads: 0 = the global setting.
template <class T>
void optim_step(const TensorList<T>& t, int nthreads = 0);

// Partial results of a gradient norm over tensors of one dtype, accumulated in
// double over fixed chunks in a fixed order (identical for any thread count).
// norm_inf: max |x|; otherwise the sum of squares.
template <class T>
double grad_norm_partial(const std::vector<const T*>& x, const std::vector<index_t>& n, bool norm_inf,
                         int nthreads = 0);

// x *= c for every tensor.
template <class T>
void scale_tensors(const std::vector<T*>& x, const std::vector<index_t>& n, T c, int nthreads = 0);

}  // namespace gk
