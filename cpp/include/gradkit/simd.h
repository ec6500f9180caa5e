// Portable SIMD for kernel templates: GCC/Clang vector extensions sized to the
// ISA of the translation unit (16 bytes generic: SSE2 or NEON; 32 bytes AVX2;
// 64 bytes AVX-512), plus vector math (exp, expm1, sigmoid, tanh, normal CDF/PDF).
//
// A kernel is written once as a template over the element type T using
// Vec<T> (operators +, -, *, /, comparisons giving Mask<T>) and the helpers
// below, and compiled once per ISA. Everything lives in gk::GK_ISA_NS::simd:
// a per-ISA source defines GK_ISA_NS (avx2, avx512) before including this
// header (docs/design.md); generic sources get gk::generic::simd.
//
// Lanes are independent: a partial vector (tail) computes exactly what the same
// elements give inside a full vector, so results never depend on where a
// thread's range starts. Horizontal reductions run in a fixed lane order.
//
// float math uses range-reduced polynomials (Cephes coefficients), accurate to
// a few ULP including denormal results, with NaN propagated and +-inf handled;
// double math calls libm per lane (correct first, float is the fast path).
// Measured max errors vs float64 (tests/test_activation.py sweeps over
// [-110, 110] and tiny magnitudes): sigmoid 3.7, tanh 1.7, elu 1.2, gelu 6.7 ULP.
// a * b + c is contracted to an FMA where the ISA has one, so ISAs may differ
// in the last bits; thread counts never change a result.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "gradkit/common.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#if !defined(GK_ISA_NS)
#if defined(__AVX2__) || defined(__AVX512F__)
#error "per-ISA sources must #define GK_ISA_NS (avx2 or avx512) before including gradkit/simd.h"
#endif
#define GK_ISA_NS generic
#endif

namespace gk::GK_ISA_NS::simd {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <class T>
struct VecTypes;
template <>
struct VecTypes<float> {
  typedef float V __attribute__((vector_size(kVecBytes)));
  typedef std::int32_t I __attribute__((vector_size(kVecBytes)));
};
template <>
struct VecTypes<double> {
  typedef double V __attribute__((vector_size(kVecBytes)));
  typedef std::int64_t I __attribute__((vector_size(kVecBytes)));
};

// Vec<T>: kLanes<T> values. Mask<T>: same-width signed integers, a comparison
// result (all ones = true) or raw bits (bit_cast).
template <class T>
using Vec = typename VecTypes<T>::V;
template <class T>
using Mask = typename VecTypes<T>::I;
template <class T>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));

// The element type of a vector type.
template <class V>
using elem_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;

// ---- construction, loads and stores -------------------------------------------------

template <class T>
GK_ALWAYS_INLINE Vec<T> set1(T a) {
  Vec<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = a;
  return v;
}

template <class T>
GK_ALWAYS_INLINE Vec<T> zero() {
  return Vec<T>{};
}

// Every lane of a Mask<T> set to a.
template <class T>
GK_ALWAYS_INLINE Mask<T> mask_set1(elem_t<Mask<T>> a) {
  Mask<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = a;
  return v;
}

// Lane indices 0, 1, ..., kLanes-1 as integers.
template <class T>
GK_ALWAYS_INLINE Mask<T> iota() {
  Mask<T> v;
  for (int i = 0; i < kLanes<T>; ++i) v[i] = i;
  return v;
}

template <class T>
GK_ALWAYS_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <class T>
GK_ALWAYS_INLINE void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

// Non-temporal store (bypasses the cache); p must be kVecBytes-aligned. Falls
// back to a plain store where the ISA has none. Call stream_fence() after the last.
template <class T>
GK_ALWAYS_INLINE void stream(T* p, Vec<T> v) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) _mm512_stream_ps(p, (__m512)v);
  else _mm512_stream_pd(p, (__m512d)v);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) _mm256_stream_ps(p, (__m256)v);
  else _mm256_stream_pd(p, (__m256d)v);
#else
  store(p, v);
#endif
}

GK_ALWAYS_INLINE void stream_fence() {
#if defined(__AVX2__) || defined(__AVX512F__)
  _mm_sfence();
#endif
}

// The first n lanes from p (0 <= n < kLanes), the others 0. Reads nothing beyond p + n.
template <class T>
GK_ALWAYS_INLINE Vec<T> load_partial(const T* p, index_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
  else return (Vec<T>)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1u), p);
#else
  Vec<T> v{};
  std::memcpy(&v, p, static_cast<size_t>(n) * sizeof(T));
  return v;
#endif
}

// Stores the first n lanes of v to p (0 <= n < kLanes). Writes nothing beyond p + n.
template <class T>
GK_ALWAYS_INLINE void store_partial(T* p, Vec<T> v, index_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), (__m512)v);
  else _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1u), (__m512d)v);
#else
  std::memcpy(p, &v, static_cast<size_t>(n) * sizeof(T));
#endif
}

// True in lanes [0, n).
template <class T>
GK_ALWAYS_INLINE Mask<T> first_lanes(index_t n) {
  return iota<T>() < static_cast<elem_t<Mask<T>>>(n);
}

// ---- lane-wise helpers ------------------------------------------------------------------

template <class V, class M>
GK_ALWAYS_INLINE V select(M m, V a, V b) {
  return m ? a : b;
}

template <class V>
GK_ALWAYS_INLINE auto bits(V v) {
  return (Mask<elem_t<V>>)v;
}

template <class T, class M>
GK_ALWAYS_INLINE Vec<T> from_bits(M m) {
  return (Vec<T>)m;
}

// min/max return b when a is NaN and a when b is NaN is not guaranteed: use
// them on NaN-free values or where either NaN outcome is acceptable.
template <class V>
GK_ALWAYS_INLINE V min(V a, V b) {
  return a < b ? a : b;
}
template <class V>
GK_ALWAYS_INLINE V max(V a, V b) {
  return a > b ? a : b;
}

// Clamp keeping NaN lanes NaN (comparisons with NaN are false).
// min(x, hi), NaN kept (one min_ps on AVX2 / AVX-512, see clamp below).
template <class V>
GK_ALWAYS_INLINE V clamp_hi(V x, elem_t<V> hi) {
  using T = elem_t<V>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return (V)_mm512_min_ps((__m512)set1(hi), (__m512)x);
  else return (V)_mm512_min_pd((__m512d)set1(hi), (__m512d)x);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) return (V)_mm256_min_ps((__m256)set1(hi), (__m256)x);
  else return (V)_mm256_min_pd((__m256d)set1(hi), (__m256d)x);
#else
  (void)sizeof(T);
  return x > hi ? set1(hi) : x;
#endif
}

// max_ps(c, x) / min_ps(c, x) return their second operand when either is NaN,
// so one instruction each (GCC keeps the ternaries as compare + blend).
template <class V>
GK_ALWAYS_INLINE V clamp(V x, elem_t<V> lo, elem_t<V> hi) {
  using T = elem_t<V>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    return (V)_mm512_min_ps((__m512)set1(hi), _mm512_max_ps((__m512)set1(lo), (__m512)x));
  } else {
    return (V)_mm512_min_pd((__m512d)set1(hi), _mm512_max_pd((__m512d)set1(lo), (__m512d)x));
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    return (V)_mm256_min_ps((__m256)set1(hi), _mm256_max_ps((__m256)set1(lo), (__m256)x));
  } else {
    return (V)_mm256_min_pd((__m256d)set1(hi), _mm256_max_pd((__m256d)set1(lo), (__m256d)x));
  }
#else
  (void)sizeof(T);
  x = x < lo ? set1(lo) : x;
  return x > hi ? set1(hi) : x;
#endif
}

template <class V>
GK_ALWAYS_INLINE auto sign_mask() {
  using T = elem_t<V>;
  using I = elem_t<Mask<T>>;
  return mask_set1<T>(std::numeric_limits<I>::min());
}

template <class V>
GK_ALWAYS_INLINE V abs(V v) {
  return from_bits<elem_t<V>>(bits(v) & ~sign_mask<V>());
}

// |mag| with the sign of sgn.
template <class V>
GK_ALWAYS_INLINE V copysign(V mag, V sgn) {
  return from_bits<elem_t<V>>((bits(mag) & ~sign_mask<V>()) | (bits(sgn) & sign_mask<V>()));
}

template <class V>
GK_ALWAYS_INLINE elem_t<V> hsum(V v) {
  elem_t<V> s = v[0];
  for (int i = 1; i < static_cast<int>(sizeof(V) / sizeof(s)); ++i) s += v[i];
  return s;
}

template <class V>
GK_ALWAYS_INLINE elem_t<V> hmax(V v) {
  elem_t<V> s = v[0];
  for (int i = 1; i < static_cast<int>(sizeof(V) / sizeof(s)); ++i) s = v[i] > s ? v[i] : s;
  return s;
}

// 1 / d for d in [1, 2^20] (or NaN): the hardware estimate refined by one
// Newton-Raphson step (float, AVX2 / AVX-512: within ~1 ULP, several times
// cheaper than a division); an exact division otherwise.
template <class V>
GK_ALWAYS_INLINE V recip(V d) {
  using T = elem_t<V>;
  if constexpr (std::is_same_v<T, float> && kVecBytes >= 32) {
#if defined(__AVX512F__)
    const V r = (V)_mm512_rcp14_ps((__m512)d);
#elif defined(__AVX2__)
    const V r = (V)_mm256_rcp_ps((__m256)d);
#else
    const V r = T(1) / d;
#endif
    return r * (T(2) - d * r);
  } else {
    return T(1) / d;
  }
}

// Applies a scalar function to every lane (the double math below).
template <class V, class F>
GK_ALWAYS_INLINE V map_lanes(V v, F f) {
  for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(v[0])); ++i) v[i] = f(v[i]);
  return v;
}

// ---- float math ----------------------------------------------------------------------------
namespace detail {

// mul * exp(hi + lo) for hi + lo in [-104, 89] (callers clamp or select):
// Cody-Waite reduction x = n ln2 + r with a 9-bit ln2_hi (n * ln2_hi exact, so
// hi - n ln2_hi is exact even for |hi| ~ 100), a degree-7 polynomial on
// |r| <= ln2/2 (Cephes expf, < 1 ULP), then 2^n applied in two steps so that
// results down to the smallest denormal round once (kTwoStep = false: one
// step, for callers whose n stays in [-126, 127]). `lo` carries a small
// correction term (the low part of -x^2/2) and `mul` a prefactor applied
// before the final scaling (so products that underflow round only once).
template <bool kLo, bool kMul, bool kTwoStep = true>
GK_ALWAYS_INLINE Vec<float> exp_f32(Vec<float> hi, Vec<float> lo, Vec<float> mul) {
  using V = Vec<float>;
  const V magic = set1(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  V sum = hi;
  if constexpr (kLo) sum = hi + lo;
  const V nf = sum * 1.44269504088896341f + magic;
  const Mask<float> n = bits(nf) - bits(magic);
  const V nv = nf - magic;
  V r = hi - nv * 0.693359375f;
  r = r - nv * -2.12194440e-4f;
  if constexpr (kLo) r = r + lo;
  V p = set1(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3333452301e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  if constexpr (kMul) p = p * mul;
#if defined(__AVX512F__)
  // p * 2^n rounded once, denormal and zero results included: one vscalefps
  // replaces the integer exponent arithmetic and both multiplications.
  (void)n;
  return (V)_mm512_scalef_ps((__m512)p, (__m512)nv);
#else
  if constexpr (!kTwoStep) return p * from_bits<float>((n + 127) << 23);  // n in [-126, 127]
  const Mask<float> n1 = n >> 1;  // arithmetic: floor(n / 2)
  const Mask<float> n2 = n - n1;
  const V s1 = from_bits<float>((n1 + 127) << 23);
  const V s2 = from_bits<float>((n2 + 127) << 23);
  return p * s1 * s2;
#endif
}

constexpr float kExpMin = -104.0f;  // exp(-104) < 2^-150 rounds to 0
constexpr float kExpMax = 89.0f;    // exp(89) > FLT_MAX

}  // namespace detail

GK_ALWAYS_INLINE Vec<float> exp(Vec<float> x) {
  const Vec<float> xc = clamp(x, detail::kExpMin, detail::kExpMax);
  return detail::exp_f32<false, false>(xc, xc, xc);
}

// exp(x) - 1 without cancellation near 0: a degree-8 Taylor polynomial for
// |x| < 0.5 (truncation < 1e-8 relative), exp(x) - 1 elsewhere.
GK_ALWAYS_INLINE Vec<float> expm1(Vec<float> x) {
  using V = Vec<float>;
  V p = set1(1.0f / 40320);
  p = p * x + 1.0f / 5040;
  p = p * x + 1.0f / 720;
  p = p * x + 1.0f / 120;
  p = p * x + 1.0f / 24;
  p = p * x + 1.0f / 6;
  p = p * x + 0.5f;
  p = p * (x * x) + x;
  return abs(x) < 0.5f ? p : exp(x) - 1.0f;
}

// 1 / (1 + exp(-x)) from e = exp(-|x|) (never overflows): s = e / (1 + e)
// for x < 0, 1 - s for x >= 0. Exact down to denormal results (x ~ -103).
GK_ALWAYS_INLINE Vec<float> sigmoid(Vec<float> x) {
  const Vec<float> e = exp(from_bits<float>(bits(x) | sign_mask<Vec<float>>()));  // exp(-|x|)
  const Vec<float> s = e * recip(1.0f + e);  // sigmoid(-|x|)
  return x < 0.0f ? s : 1.0f - s;             // exactly 1 once e < 2^-25
}

// tanh with the sign of x (-0 stays -0): Cephes tanhf's odd polynomial for
// |x| < 0.625; above, 1 - 2e / (1 + e) with e = exp(-2z), z = min(|x|, 9.5)
// (tanh(9.1) rounds to 1; no cancellation since tanh >= 0.55), the divisor in
// [1, 2] (reciprocal estimate is safe), and 2^n in one step (n in [-28, 0]).
GK_ALWAYS_INLINE Vec<float> tanh(Vec<float> x) {
  using V = Vec<float>;
  const V ax = abs(x);
  const V z = clamp_hi(ax, 9.5f);  // keeps NaN
  const V s = z * z;
  V q = set1(-5.70498872745e-3f);
  q = q * s + 2.06390887954e-2f;
  q = q * s - 5.37397155531e-2f;
  q = q * s + 1.33314422036e-1f;
  q = q * s - 3.33332819422e-1f;
  const V small = q * s * z + z;
  const V e = detail::exp_f32<false, false, false>(-2.0f * z, z, z);
  const V big = 1.0f - (e + e) * recip(1.0f + e);  // exactly 1 once e < 2^-26
  return copysign(z < 0.625f ? small : big, x);
}

// normal_tail and normal_pdf take x in [-kNormalClamp, kNormalClamp]: beyond,
// both are 0 in the type (callers clamp x, and any prefactor, so that an
// infinite x never meets a 0).
template <class T>
constexpr T kNormalClamp = sizeof(T) == 4 ? T(14.5) : T(40);

// mul * exp(-x^2 / 2 + extra) for |x| <= 14.5 and extra in [-2, 0], accurate
// for large |x|: x = xh + xl with xh holding 12 significant bits, so xh^2 is
// exact and the rounding of x^2 never reaches the exponent (exp's relative
// error would otherwise grow like x^2 ULP). The exponent stays >= -107, so
// the two-step scaling rounds results below 2^-149 to 0 without a select.
GK_ALWAYS_INLINE Vec<float> exp_neg_half_sq(Vec<float> x, Vec<float> mul, Vec<float> extra) {
  using V = Vec<float>;
  const V xh = from_bits<float>(bits(x) & mask_set1<float>(static_cast<std::int32_t>(0xFFFFF000u)));
  const V hi = xh * xh * -0.5f;
  const V lo = (x - xh) * (x + xh) * -0.5f + extra;
  return detail::exp_f32<true, true>(hi, lo, mul);
}

// mul * Phi(-|x|) = mul * erfc(|x| / sqrt 2) / 2, the standard normal tail,
// with a relative error of a few ULP down to denormal results:
// erfc(z) = t exp(-z^2 + Q(t)), t = 1 / (1 + z / 2) (the Numerical Recipes
// form), Q a degree-10 least-squares fit on t in [0.15, 1] (z <= 11.3).
// |x| <= kNormalClamp<float>.
GK_ALWAYS_INLINE Vec<float> normal_tail(Vec<float> x, Vec<float> mul) {
  using V = Vec<float>;
  const V z = abs(x) * 0.70710678118654752f;
  const V t = recip(1.0f + 0.5f * z);  // divisor in [1, 6.2]
  const V s = t * 2.35294117647058824f - 1.35294117647058824f;  // t in [0.15, 1] -> [-1, 1]
  V q = set1(-2.570661691e-05f);
  q = q * s + 6.975276732e-05f;
  q = q * s + 1.354577611e-04f;
  q = q * s - 6.342521676e-04f;
  q = q * s - 2.214654620e-04f;
  q = q * s + 4.123349715e-03f;
  q = q * s - 1.535719620e-03f;
  q = q * s - 3.116925720e-02f;
  q = q * s + 1.821801882e-02f;
  q = q * s + 5.810347901e-01f;
  q = q * s - 5.699949639e-01f;
  return exp_neg_half_sq(x, mul * t * 0.5f, q);
}

// mul * phi(x), the standard normal density; |x| <= kNormalClamp<float>.
GK_ALWAYS_INLINE Vec<float> normal_pdf(Vec<float> x, Vec<float> mul) {
  return exp_neg_half_sq(x, mul * 0.398942280401432678f, zero<float>());
}

// ---- double math: libm per lane ---------------------------------------------------------------

GK_ALWAYS_INLINE Vec<double> exp(Vec<double> x) {
  return map_lanes(x, [](double v) { return std::exp(v); });
}

GK_ALWAYS_INLINE Vec<double> expm1(Vec<double> x) {
  return map_lanes(x, [](double v) { return std::expm1(v); });
}

GK_ALWAYS_INLINE Vec<double> sigmoid(Vec<double> x) {
  const Vec<double> e = exp(-abs(x));
  return (x < 0.0 ? e : set1(1.0)) / (1.0 + e);
}

GK_ALWAYS_INLINE Vec<double> tanh(Vec<double> x) {
  return map_lanes(x, [](double v) { return std::tanh(v); });
}

GK_ALWAYS_INLINE Vec<double> normal_tail(Vec<double> x, Vec<double> mul) {
  for (int i = 0; i < kLanes<double>; ++i) mul[i] *= 0.5 * std::erfc(std::fabs(x[i]) * 0.70710678118654752440);
  return mul;
}

GK_ALWAYS_INLINE Vec<double> normal_pdf(Vec<double> x, Vec<double> mul) {
  for (int i = 0; i < kLanes<double>; ++i) mul[i] *= 0.398942280401432678 * std::exp(-0.5 * x[i] * x[i]);
  return mul;
}

}  // namespace gk::GK_ISA_NS::simd
