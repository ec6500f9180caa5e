// Optimizer kernels, one template compiled once per ISA (define GK_ISA_NS first:
// generic, avx2 or avx512), written on the vectors of gradkit/simd.h: full
// vectors, then one partial vector for the last n % kLanes elements, so every
// update (penalties included) is one vectorised pass on every ISA.
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
#include "gradkit/simd.h"

// No FMA contraction here: PyTorch rounds each product and sum separately.
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
using namespace gk::GK_ISA_NS::simd;

// Calls f(bool_constant) with b as a compile-time constant.
template <class F>
GK_ALWAYS_INLINE void with_flag(bool b, F&& f) {
  if (b) f(true_type{});
  else f(false_type{});
}

// Loads and stores of kLanes<T> elements (Full) or of the last n < kLanes (Part).
template <class T>
struct Full {
  GK_ALWAYS_INLINE Vec<T> ld(const T* p) const { return load(p); }
  GK_ALWAYS_INLINE void st(T* p, Vec<T> v) const { store(p, v); }
};
template <class T>
struct Part {
  index_t n;
  GK_ALWAYS_INLINE Vec<T> ld(const T* p) const { return load_partial(p, n); }
  GK_ALWAYS_INLINE void st(T* p, Vec<T> v) const { store_partial(p, v, n); }
};

// Calls body(i, io) for i = 0, kLanes, 2 kLanes, ... < n; io loads and stores the
// lanes at offset i (the padding lanes of the last vector compute on zeros and are
// never stored). A lane's result does not depend on which vector it is in.
template <class T, class Body>
GK_ALWAYS_INLINE void for_vectors(index_t n, Body&& body) {
  constexpr index_t L = kLanes<T>;
  index_t i = 0;
  for (; i + L <= n; i += L) body(i, Full<T>{});
  if (i < n) body(i, Part<T>{n - i});
}

// The penalties added to the gradient: g + weight_decay * p + l1 * sign(p), each
// term only when its coefficient is nonzero (as PyTorch skips weight_decay == 0);
// sign(0) = sign(NaN) = 0, as torch.sign. Branch-free: two compares and masks.
template <class T, bool kWd, bool kL1>
struct Penalty {
  Vec<T> wd, l1, neg_l1;
  Penalty(const OptimHyper& h, double weight_decay)
      : wd(set1(T(weight_decay))), l1(set1(T(h.l1))), neg_l1(set1(T(-h.l1))) {}
  GK_ALWAYS_INLINE Vec<T> operator()(Vec<T> g, Vec<T> p) const {
    if constexpr (kWd) g = g + wd * p;
    if constexpr (kL1) g = g + from_bits<T>((bits(l1) & (p > T(0))) | (bits(neg_l1) & (p < T(0))));
    return g;
  }
};

// Calls f(Penalty) with the terms of `weight_decay` (the coupled L2 coefficient) and h.l1.
template <class T, class F>
GK_ALWAYS_INLINE void with_penalty(const OptimHyper& h, double weight_decay, F&& f) {
  with_flag(weight_decay != 0, [&](auto kWd) {
    with_flag(h.l1 != 0, [&](auto kL1) { f(Penalty<T, kWd(), kL1()>(h, weight_decay)); });
  });
}

// torch.lerp(a, b, w): a + w (b - a) for w < 0.5, else b - (b - a)(1 - w), written
// base + (b - a) c with (base, c) = (a, w) or (b, -(1 - w)): the same roundings.
template <class T>
struct Lerp {
  bool small_w;
  Vec<T> c;
  explicit Lerp(double w) : small_w(w < 0.5), c(set1(small_w ? T(w) : -(T(1) - T(w)))) {}  // 1 - w in T, as torch
  GK_ALWAYS_INLINE Vec<T> operator()(Vec<T> a, Vec<T> b) const { return (small_w ? a : b) + (b - a) * c; }
};

// p (n), g (n), buf (n) momentum buffer or nullptr; elementwise.
template <class T>
void sgd_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                T* GK_RESTRICT buf, T*, T*, index_t n) {
  const Vec<T> neg_lr = set1(T(-h.lr)), mom = set1(T(h.momentum)), damp1 = set1(T(1 - h.dampening));
  with_penalty<T>(h, h.weight_decay, [&](auto pen) {
    if (h.momentum == 0) {
      for_vectors<T>(n, [&](index_t i, auto io) {
        const Vec<T> pi = io.ld(p + i);
        io.st(p + i, pi + neg_lr * pen(io.ld(g + i), pi));
      });
      return;
    }
    with_flag(h.nesterov, [&](auto kNest) {
      with_flag(s.first, [&](auto kFirst) {  // buf = g on the first step (no dampening)
        for_vectors<T>(n, [&](index_t i, auto io) {
          const Vec<T> pi = io.ld(p + i);
          const Vec<T> gi = pen(io.ld(g + i), pi);
          Vec<T> b = gi;
          if constexpr (!kFirst()) b = io.ld(buf + i) * mom + damp1 * gi;
          io.st(buf + i, b);
          const Vec<T> d = kNest() ? gi + mom * b : b;
          io.st(p + i, pi + neg_lr * d);
        });
      });
    });
  });
}

// p (n), g (n), sum (n); s.lr is the decayed clr.
template <class T>
void adagrad_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                    T* GK_RESTRICT sum, T*, T*, index_t n) {
  const Vec<T> neg_clr = set1(T(-s.lr)), eps = set1(T(h.eps));
  with_penalty<T>(h, h.weight_decay, [&](auto pen) {
    for_vectors<T>(n, [&](index_t i, auto io) {
      const Vec<T> pi = io.ld(p + i);
      const Vec<T> gi = pen(io.ld(g + i), pi);
      const Vec<T> acc = io.ld(sum + i) + gi * gi;
      io.st(sum + i, acc);
      io.st(p + i, pi + neg_clr * (gi / (simd::sqrt<T>(acc) + eps)));
    });
  });
}

// p (n), g (n), sq square_avg (n), buf momentum buffer (n, momentum > 0), ga grad_avg (n, centered).
template <class T>
void rmsprop_kernel(const OptimHyper& h, const OptimStepScalars& s, T* GK_RESTRICT p, const T* GK_RESTRICT g,
                    T* GK_RESTRICT sq, T* GK_RESTRICT buf, T* GK_RESTRICT ga, index_t n) {
  const Vec<T> neg_lr = set1(T(-h.lr)), eps = set1(T(h.eps)), mom = set1(T(h.momentum));
  const Vec<T> alpha = set1(T(h.alpha)), w = set1(T(1 - h.alpha));
  const Lerp<T> lerp(1 - h.alpha);
  with_penalty<T>(h, h.weight_decay, [&](auto pen) {
    with_flag(h.centered, [&](auto kCentered) {
      with_flag(h.momentum > 0, [&](auto kMom) {
        for_vectors<T>(n, [&](index_t i, auto io) {
          const Vec<T> pi = io.ld(p + i);
          const Vec<T> gi = pen(io.ld(g + i), pi);
          const Vec<T> v = io.ld(sq + i) * alpha + w * gi * gi;  // addcmul: value * t1 * t2
          io.st(sq + i, v);
          Vec<T> avg;
          if constexpr (kCentered()) {
            const Vec<T> m = lerp(io.ld(ga + i), gi);
            io.st(ga + i, m);
            avg = simd::sqrt<T>(v + -(m * m)) + eps;
          } else {
            avg = simd::sqrt<T>(v) + eps;
          }
          if constexpr (kMom()) {
            const Vec<T> b = io.ld(buf + i) * mom + gi / avg;
            io.st(buf + i, b);
            io.st(p + i, pi + neg_lr * b);
          } else {
            io.st(p + i, pi + neg_lr * (gi / avg));
          }
        });
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
  const Vec<T> neg_step = set1(T(-s.lr)), inv_bc2 = set1(T(1.0 / s.bc2_sqrt)), eps = set1(T(h.eps));
  const Vec<T> beta2 = set1(T(h.beta2)), w2 = set1(T(1 - h.beta2));
  const Vec<T> keep = set1(T(1 - h.lr * h.weight_decay));  // AdamW: p *= 1 - lr * weight_decay
  const Lerp<T> lerp(1 - h.beta1);
  with_penalty<T>(h, h.decoupled ? 0.0 : h.weight_decay, [&](auto pen) {
    with_flag(h.decoupled && h.weight_decay != 0, [&](auto kDecay) {
      with_flag(h.amsgrad, [&](auto kAms) {
        for_vectors<T>(n, [&](index_t i, auto io) {
          Vec<T> pi = io.ld(p + i);
          const Vec<T> gi = pen(io.ld(g + i), pi);
          if constexpr (kDecay()) pi = pi * keep;
          const Vec<T> mi = lerp(io.ld(m + i), gi);
          io.st(m + i, mi);
          Vec<T> vi = io.ld(v + i) * beta2 + w2 * gi * gi;
          io.st(v + i, vi);
          if constexpr (kAms()) {
            const Vec<T> vm = io.ld(vmax + i);
            vi = vm > vi ? vm : vi;
            io.st(vmax + i, vi);
          }
          const Vec<T> denom = simd::sqrt<T>(vi) * inv_bc2 + eps;
          io.st(p + i, pi + neg_step * (mi / denom));
        });
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
  // Every rule of the list in gradkit/optim.h: its kernel is `kind`_kernel above.
#define GK_OPTIM_KERNEL(kind, ...) k.step[static_cast<int>(OptimKind::kind)] = &kind##_kernel<T>;
  GK_OPTIM_RULES(GK_OPTIM_KERNEL)
#undef GK_OPTIM_KERNEL
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
