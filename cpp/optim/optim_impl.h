// Optimizer kernels, one template compiled once per ISA (define GK_ISA_NS first:
// generic, avx2 or avx512). Plain loops under `#pragma omp simd`: the update is
// memory-bound, and the compiler vectorises sqrt, division and the selects.
//
// Each kernel reads p, g and the state once and writes p and the state once.
// The order of operations follows PyTorch's single-tensor path
// (torch/optim/{sgd,adagrad,rmsprop,adam}.py) so trajectories agree to rounding.
#pragma once
#ifndef GK_ISA_NS
#error "define GK_ISA_NS (generic, avx2 or avx512) before including optim/optim_impl.h"
#endif
#include <cmath>
#include <type_traits>

#include "gradkit/optim.h"

// No FMA contraction here: PyTorch rounds each product and sum separately, and a
// contracted vector body next to an uncontracted scalar tail would round differently.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace gk::GK_ISA_NS {
namespace optim_detail {

using std::false_type;
using std::true_type;

// Calls f(bool_constant) with b as a compile-time constant.
template <class F>
GK_ALWAYS_INLINE void with_flag(bool b, F&& f) {
  if (b) f(true_type{});
  else f(false_type{});
}

template <class T>
GK_ALWAYS_INLINE T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

// g + wd * p + l1 * sign(p): the coupled L2 and the L1 penalty (kPen false: g).
template <bool kPen, class T>
GK_ALWAYS_INLINE T penalised(T g, T p, T wd, T l1) {
  if constexpr (kPen) return g + wd * p + l1 * sign_of(p);
  else return g;
}

// torch.lerp(a, b, w): a + w (b - a) for w < 0.5, else b - (b - a)(1 - w).
template <class T>
GK_ALWAYS_INLINE T lerp(T a, T b, T w, bool small_w) {
  return small_w ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// p (n), g (n), buf (n) momentum buffer or nullptr; elementwise.
template <class T>
void sgd_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                T* GK_RESTRICT buf, T*, T*, index_t n) {
  const T lr = T(h.lr), wd = T(h.weight_decay), l1 = T(h.l1), mom = T(h.momentum), damp1 = T(1 - h.dampening);
  const bool pen = h.weight_decay != 0 || h.l1 != 0;
  with_flag(pen, [&](auto kPen) {
    if (h.momentum == 0) {
#pragma omp simd
      for (index_t i = 0; i < n; ++i) p[i] = p[i] + -lr * penalised<kPen()>(g[i], p[i], wd, l1);
    } else if (s.first) {  // buf = g on the first step (no dampening)
      with_flag(h.nesterov, [&](auto kNest) {
#pragma omp simd
        for (index_t i = 0; i < n; ++i) {
          const T gi = penalised<kPen()>(g[i], p[i], wd, l1);
          buf[i] = gi;
          const T d = kNest() ? gi + mom * gi : gi;
          p[i] = p[i] + -lr * d;
        }
      });
    } else {
      with_flag(h.nesterov, [&](auto kNest) {
#pragma omp simd
        for (index_t i = 0; i < n; ++i) {
          const T gi = penalised<kPen()>(g[i], p[i], wd, l1);
          const T b = buf[i] * mom + damp1 * gi;
          buf[i] = b;
          const T d = kNest() ? gi + mom * b : b;
          p[i] = p[i] + -lr * d;
        }
      });
    }
  });
}

// p (n), g (n), sum (n); s.lr is the decayed clr.
template <class T>
void adagrad_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                    T* GK_RESTRICT sum, T*, T*, index_t n) {
  const T clr = T(s.lr), wd = T(h.weight_decay), l1 = T(h.l1), eps = T(h.eps);
  with_flag(h.weight_decay != 0 || h.l1 != 0, [&](auto kPen) {
#pragma omp simd
    for (index_t i = 0; i < n; ++i) {
      const T gi = penalised<kPen()>(g[i], p[i], wd, l1);
      const T acc = sum[i] + gi * gi;
      sum[i] = acc;
      p[i] = p[i] + -clr * (gi / (std::sqrt(acc) + eps));
    }
  });
}

// p (n), g (n), sq square_avg (n), buf momentum buffer (n, momentum > 0), ga grad_avg (n, centered).
template <class T>
void rmsprop_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                    T* GK_RESTRICT sq, T* GK_RESTRICT buf, T* GK_RESTRICT ga, index_t n) {
  const T lr = T(h.lr), wd = T(h.weight_decay), l1 = T(h.l1), eps = T(h.eps), mom = T(h.momentum);
  const T alpha = T(h.alpha), w = T(1 - h.alpha);
  const bool small_w = (1 - h.alpha) < 0.5;
  with_flag(h.weight_decay != 0 || h.l1 != 0, [&](auto kPen) {
    with_flag(h.centered, [&](auto kCentered) {
      with_flag(h.momentum > 0, [&](auto kMom) {
#pragma omp simd
        for (index_t i = 0; i < n; ++i) {
          const T gi = penalised<kPen()>(g[i], p[i], wd, l1);
          const T v = sq[i] * alpha + w * gi * gi;  // addcmul: value * t1 * t2
          sq[i] = v;
          T avg;
          if constexpr (kCentered()) {
            const T m = lerp(ga[i], gi, w, small_w);
            ga[i] = m;
            avg = std::sqrt(v + -(m * m)) + eps;
          } else {
            avg = std::sqrt(v) + eps;
          }
          if constexpr (kMom()) {
            const T b = buf[i] * mom + gi / avg;
            buf[i] = b;
            p[i] = p[i] + -lr * b;
          } else {
            p[i] = p[i] + -lr * (gi / avg);
          }
        }
      });
    });
  });
}

// p (n), g (n), m exp_avg (n), v exp_avg_sq (n), vmax max_exp_avg_sq (n, amsgrad).
// s.lr = lr / (1 - beta1^step), s.bc2_sqrt = sqrt(1 - beta2^step).
template <class T>
void adam_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                 T* GK_RESTRICT m, T* GK_RESTRICT v, T* GK_RESTRICT vmax, index_t n) {
  // sqrt(v) / sqrt(1 - beta2^t) as a product with the reciprocal (computed in double):
  // one division per element instead of two; within rounding of PyTorch's form.
  const T step_size = T(s.lr), inv_bc2 = T(1.0 / s.bc2_sqrt), eps = T(h.eps), l1 = T(h.l1);
  const T wd = h.decoupled ? T(0) : T(h.weight_decay);
  const T w1 = T(1 - h.beta1), beta2 = T(h.beta2), w2 = T(1 - h.beta2);
  const bool small_w1 = (1 - h.beta1) < 0.5;
  const bool decay = h.decoupled && h.weight_decay != 0;
  const T keep = T(1 - h.lr * h.weight_decay);  // AdamW: p *= 1 - lr * weight_decay
  with_flag(wd != T(0) || h.l1 != 0, [&](auto kPen) {
    with_flag(decay, [&](auto kDecay) {
      with_flag(h.amsgrad, [&](auto kAms) {
#pragma omp simd
        for (index_t i = 0; i < n; ++i) {
          T pi = p[i];
          const T gi = penalised<kPen()>(g[i], pi, wd, l1);
          if constexpr (kDecay()) pi = pi * keep;
          const T mi = lerp(m[i], gi, w1, small_w1);
          m[i] = mi;
          T vi = v[i] * beta2 + w2 * gi * gi;
          v[i] = vi;
          if constexpr (kAms()) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
          }
          const T denom = std::sqrt(vi) * inv_bc2 + eps;
          p[i] = pi + -step_size * (mi / denom);
        }
      });
    });
  });
}

template <class T>
double sumsq_kernel(const T* GK_RESTRICT x, index_t n) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (index_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return acc;
}

template <class T>
double absmax_kernel(const T* GK_RESTRICT x, index_t n) {
  T mx = 0;
  int nan = 0;
#pragma omp simd reduction(max : mx) reduction(| : nan)
  for (index_t i = 0; i < n; ++i) {
    const T a = std::abs(x[i]);
    mx = a > mx ? a : mx;
    nan |= static_cast<int>(x[i] != x[i]);
  }
  return nan ? static_cast<double>(NAN) : static_cast<double>(mx);
}

template <class T>
void scale_kernel(T* GK_RESTRICT x, T c, index_t n) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) x[i] *= c;
}

template <class T>
constexpr void fill_kernels(OptimKernels<T>& k) {
  k.step[static_cast<int>(OptimKind::sgd)] = &sgd_kernel<T>;
  k.step[static_cast<int>(OptimKind::adagrad)] = &adagrad_kernel<T>;
  k.step[static_cast<int>(OptimKind::rmsprop)] = &rmsprop_kernel<T>;
  k.step[static_cast<int>(OptimKind::adam)] = &adam_kernel<T>;
  k.sumsq = &sumsq_kernel<T>;
  k.absmax = &absmax_kernel<T>;
  k.scale = &scale_kernel<T>;
}

}  // namespace optim_detail

// Fills every entry of the table with this ISA's instantiation.
constexpr void fill_optim_table(OptimTable& t) {
  optim_detail::fill_kernels(t.f32);
  optim_detail::fill_kernels(t.f64);
}

}  // namespace gk::GK_ISA_NS

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
