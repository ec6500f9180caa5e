// Pooling kernel templates, compiled once per ISA (the includer defines GK_ISA_NS).
// Each function handles `np` consecutive planes; the driver (pool.cpp) splits planes over threads.
#pragma once
#include <limits>

#include "gradkit/pool.h"
#include "gradkit/pool2x2.h"
#include "gradkit/simd.h"

namespace gk::GK_ISA_NS {

namespace poolk {

// The input window of output (oh, ow), clipped to the plane: rows [h0, h1), cols [w0, w1).
struct Window {
  index_t h0, h1, w0, w1;
};
GK_ALWAYS_INLINE Window window(const PoolShape& s, index_t oh, index_t ow) {
  const index_t hs = oh * s.SH - s.PH, ws = ow * s.SW - s.PW;
  return {max<index_t>(hs, 0), min(hs + s.KH, s.H), max<index_t>(ws, 0), min(ws + s.KW, s.W)};
}

// Replace (m, i) by (v, j) when v is larger or NaN (PyTorch's rule).
template <class T>
GK_ALWAYS_INLINE void take_max(T& m, std::int32_t& i, T v, std::int32_t j) {
  const bool take = v > m || v != v;
  m = take ? v : m;
  i = take ? j : i;
}

}  // namespace poolk

// y, idx (np,OH,OW) <- max over windows of x (np,H,W).
template <class T>
void max_pool_forward(T* y, std::int32_t* idx, const T* x, const PoolShape& s, index_t np) {
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const bool k2s2 = s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PH == 0 && s.PW == 0;
  for (index_t p = 0; p < np; ++p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    std::int32_t* ip = idx + p * out_plane;
    if (k2s2) {  // the CNN's MaxPool2: a vector of outputs at a time (gradkit/pool2x2.h)
      using M = simd::Mask<T>;
      using I = simd::elem_t<M>;
      for (index_t oh = 0; oh < s.OH; ++oh) {
        const T* r0 = xp + 2 * oh * s.W;
        const T* r1 = r0 + s.W;
        const M base = simd::mask_set1<T>(static_cast<I>(2 * oh * s.W));
        for (index_t o0 = 0; o0 < s.OW; o0 += simd::kLanes<T>) {
          const index_t n = s.OW - o0, nin = s.W - 2 * o0;
          simd::Vec<T> e0, d0, e1, d1, m;
          M j;
          pool2x2::load_pairs(r0 + 2 * o0, nin, e0, d0);
          pool2x2::load_pairs(r1 + 2 * o0, nin, e1, d1);
          pool2x2::window_max<T>(e0, d0, e1, d1, m, j);
          // flat index in the plane: row 2*oh + (j >> 1), column 2 * (o0 + lane) + (j & 1)
          const M col = 2 * (simd::iota<T>() + static_cast<I>(o0)) + (j & 1);
          const M idx = base + (j >> 1) * static_cast<I>(s.W) + col;
          simd::store_first(yp + oh * s.OW + o0, m, n);
          simd::store_int32<T>(ip + oh * s.OW + o0, idx, n);
        }
      }
      continue;
    }
    for (index_t oh = 0; oh < s.OH; ++oh) {
      for (index_t ow = 0; ow < s.OW; ++ow) {
        const poolk::Window win = poolk::window(s, oh, ow);
        constexpr T kInf = std::numeric_limits<T>::infinity();  // constant: no call out of the ISA namespace
        T m = -kInf;
        auto i = static_cast<std::int32_t>(win.h0 * s.W + win.w0);
        for (index_t ih = win.h0; ih < win.h1; ++ih) {
          for (index_t iw = win.w0; iw < win.w1; ++iw) {
            poolk::take_max(m, i, xp[ih * s.W + iw], static_cast<std::int32_t>(ih * s.W + iw));
          }
        }
        yp[oh * s.OW + ow] = m;
        ip[oh * s.OW + ow] = i;
      }
    }
  }
}

// dx (np,H,W) = 0, then dx[idx] += dy for every output (in output order).
// Returns how many indices fell outside the plane (those are skipped).
template <class T>
index_t max_pool_backward(T* dx, const T* dy, const std::int32_t* idx, const PoolShape& s, index_t np) {
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  index_t bad = 0;
  for (index_t p = 0; p < np; ++p) {
    T* dxp = dx + p * in_plane;
    fill(dxp, dxp + in_plane, T(0));
    const T* dyp = dy + p * out_plane;
    const std::int32_t* ip = idx + p * out_plane;
    for (index_t o = 0; o < out_plane; ++o) {
      const index_t i = ip[o];
      if (i >= 0 && i < in_plane) {
        dxp[i] += dyp[o];
      } else {
        ++bad;
      }
    }
  }
  return bad;
}

// y (np,OH,OW) = window sums of x (np,H,W) / (KH*KW).
template <class T>
void avg_pool_forward(T* y, const T* x, const PoolShape& s, index_t np) {
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const T scale = T(1) / static_cast<T>(s.KH * s.KW);
  for (index_t p = 0; p < np; ++p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    for (index_t oh = 0; oh < s.OH; ++oh) {
      for (index_t ow = 0; ow < s.OW; ++ow) {
        const poolk::Window win = poolk::window(s, oh, ow);
        T sum = 0;
        for (index_t ih = win.h0; ih < win.h1; ++ih) {
          for (index_t iw = win.w0; iw < win.w1; ++iw) sum += xp[ih * s.W + iw];
        }
        yp[oh * s.OW + ow] = sum * scale;
      }
    }
  }
}

// dx (np,H,W) = 0, then each dy / (KH*KW) added over its window.
template <class T>
void avg_pool_backward(T* dx, const T* dy, const PoolShape& s, index_t np) {
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const T scale = T(1) / static_cast<T>(s.KH * s.KW);
  for (index_t p = 0; p < np; ++p) {
    T* dxp = dx + p * in_plane;
    fill(dxp, dxp + in_plane, T(0));
    const T* dyp = dy + p * out_plane;
    for (index_t oh = 0; oh < s.OH; ++oh) {
      for (index_t ow = 0; ow < s.OW; ++ow) {
        const poolk::Window win = poolk::window(s, oh, ow);
        const T g = dyp[oh * s.OW + ow] * scale;
        for (index_t ih = win.h0; ih < win.h1; ++ih) {
          for (index_t iw = win.w0; iw < win.w1; ++iw) dxp[ih * s.W + iw] += g;
        }
      }
    }
  }
}

// y (np,) = mean of each plane of x (np, HW); lanes summed in a fixed order.
template <class T>
void global_forward(T* y, const T* x, index_t np, index_t HW) {
  constexpr index_t L = simd::kLanes<T>;
  for (index_t p = 0; p < np; ++p) {
    const T* xp = x + p * HW;
    simd::Vec<T> acc{};
    index_t i = 0;
    for (; i + L <= HW; i += L) acc += simd::load(xp + i);
    T sum = simd::hsum(acc);
    for (; i < HW; ++i) sum += xp[i];
    y[p] = sum / static_cast<T>(HW);
  }
}

// dx (np, HW) = dy[p] / HW.
template <class T>
void global_backward(T* dx, const T* dy, index_t np, index_t HW) {
  for (index_t p = 0; p < np; ++p) fill(dx + p * HW, dx + (p + 1) * HW, dy[p] / static_cast<T>(HW));
}

template <class T>
constexpr PoolKernels<T> pool_kernels() {
  return {&max_pool_forward<T>, &max_pool_backward<T>, &avg_pool_forward<T>,
          &avg_pool_backward<T>, &global_forward<T>,   &global_backward<T>};
}

}  // namespace gk::GK_ISA_NS
