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
#include <vector>

#include "gradkit/common.h"
#include "gradkit/isa.h"

namespace gk {

enum class OptimKind : int { sgd = 0, adagrad = 1, rmsprop = 2, adam = 3 };
constexpr int kNumOptimKinds = 4;

// Hyperparameters of one parameter group (PyTorch's names and meanings).
// weight_decay is the coupled L2 term (g += weight_decay * p) except for
// AdamW (decoupled: p *= 1 - lr * weight_decay first); l1 adds l1 * sign(p) to g.
struct OptimHyper {
  OptimKind kind = OptimKind::sgd;
  double lr = 0, weight_decay = 0, l1 = 0, eps = 0;
  double momentum = 0, dampening = 0;  // SGD (and RMSprop's momentum)
  bool nesterov = false;
  double alpha = 0;                     // RMSprop smoothing constant
  bool centered = false;
  double lr_decay = 0;                  // Adagrad
  double beta1 = 0, beta2 = 0;          // Adam
  bool amsgrad = false, decoupled = false;
};

// Scalars of one tensor's update at its step count, computed in double.
struct OptimStepScalars {
  double lr = 0;        // Adagrad: lr / (1 + (step-1) lr_decay); Adam: lr / (1 - beta1^step); else lr
  double bc2_sqrt = 1;  // Adam: sqrt(1 - beta2^step)
  bool first = false;   // SGD: the momentum buffer is new (buf = g, no dampening)
};

// The state slots each kind uses (nullptr when unused):
//   sgd: s0 momentum_buffer (momentum != 0)
//   adagrad: s0 sum
//   rmsprop: s0 square_avg, s1 momentum_buffer (momentum > 0), s2 grad_avg (centered)
//   adam: s0 exp_avg, s1 exp_avg_sq, s2 max_exp_avg_sq (amsgrad)
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
