// The SIMD layer: portable vectors for kernel templates, GCC/Clang vector extensions
// sized to the ISA of the translation unit (16 bytes generic: SSE2 or NEON; 32 bytes
// AVX2; 64 bytes AVX-512): types, loads and stores (masked ones included), arithmetic,
// comparisons and blends, shuffles, reductions. The vector math (exp, tanh, GELU, ...)
// is built on it in gradkit/simd_math.h.
//
// A kernel is written once as a template over the element type T using
// Vec<T> (operators +, -, *, /, comparisons giving Mask<T>) and the functions
// below, and compiled once per ISA. Everything lives in gk::GK_ISA_NS::simd:
// a per-ISA source defines GK_ISA_NS (avx2, avx512) before including this
// header (docs/design.md); generic sources get gk::generic::simd.
// Intrinsics belong here (and in gradkit/simd_math.h and the GEMM micro-kernels),
// never in an area's kernels: an operation a kernel needs that vector extensions
// do not give becomes a function here, with its generic, AVX2 and AVX-512 versions.
//
// Lanes are independent: a partial vector (tail) computes exactly what the same
// elements give inside a full vector, so results never depend on where a
// thread's range starts. Horizontal reductions run in a fixed lane order.
// a * b + c is contracted to an FMA where the ISA has one, so ISAs may differ
// in the last bits; thread counts never change a result.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "gradkit/common.h"
#include "gradkit/isa_common.h"

#if defined(__SSE2__) || defined(__AVX2__) || defined(__AVX512F__)
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

// Vectors of B bytes of T: the native width kVecBytes, or a half or a quarter of it (16 bytes
// at least) for kernels whose rows fill only part of a native vector (conv's Winograd).
template <class T, int B = kVecBytes>
struct VecTypes {
  typedef T V __attribute__((vector_size(B)));
  typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> I __attribute__((vector_size(B)));
};

// Vec<T>: kLanes<T> values. Mask<T>: same-width signed integers, a comparison
// result (all ones = true) or raw bits (bit_cast).
template <class T, int B = kVecBytes>
using Vec = typename VecTypes<T, B>::V;
template <class T, int B = kVecBytes>
using Mask = typename VecTypes<T, B>::I;
template <class T>
constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));

// The element type of a vector type, its lane count and its mask type.
template <class V>
using elem_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<V>()[0])>>;
template <class V>
constexpr int lanes_of = static_cast<int>(sizeof(V) / sizeof(elem_t<V>));
template <class V>
using mask_of = Mask<elem_t<V>, static_cast<int>(sizeof(V))>;

// ---- construction, loads and stores -------------------------------------------------

// a - 0 is exactly a (-0 and NaN included), so this is one broadcast; a per-lane loop
// compiles to a masked broadcast per lane when a is not a constant.
template <class T>
GK_ALWAYS_INLINE Vec<T> set1(T a) {
  return a - Vec<T>{};
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

// Lane indices 0, 1, ..., kLanes-1 as integers (of a vector of B bytes).
template <class T, int B = kVecBytes>
GK_ALWAYS_INLINE Mask<T, B> iota() {
  Mask<T, B> v;
  for (int i = 0; i < lanes_of<Mask<T, B>>; ++i) v[i] = i;
  return v;
}

template <class T, int B = kVecBytes>
GK_ALWAYS_INLINE Vec<T, B> load(const T* p) {
  Vec<T, B> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <class V>
GK_ALWAYS_INLINE void store(elem_t<V>* p, V v) {
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

// Lanes [a, b) from p + a, ..., p + b - 1 (0 <= a, b <= kLanes), the others 0 (all 0 when
// b <= a). Reads nothing outside [p + a, p + b).
template <class T>
GK_ALWAYS_INLINE Vec<T> load_lanes(const T* p, index_t a, index_t b) {
#if defined(__AVX512F__)
  const unsigned m = ((1u << b) - 1u) & ~((1u << a) - 1u);
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm512_maskz_loadu_ps((__mmask16)m, p);
  else return (Vec<T>)_mm512_maskz_loadu_pd((__mmask8)m, p);
#elif defined(__AVX2__)
  const Mask<T> i = iota<T>();
  const Mask<T> m = (i >= static_cast<elem_t<Mask<T>>>(a)) & (i < static_cast<elem_t<Mask<T>>>(b));
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm256_maskload_ps(p, (__m256i)m);
  else return (Vec<T>)_mm256_maskload_pd(p, (__m256i)m);
#else
  Vec<T> v{};
  for (index_t i = a; i < b; ++i) v[i] = p[i];
  return v;
#endif
}

// Stores lanes [a, b) of v to p + a, ..., p + b - 1 (nothing when b <= a). Writes nothing else.
// v may be a native vector or a narrower one (Vec<T, B>).
template <class V>
GK_ALWAYS_INLINE void store_lanes(elem_t<V>* p, V v, index_t a, index_t b) {
  using T = elem_t<V>;
  constexpr int B = static_cast<int>(sizeof(V));
#if defined(__AVX512F__)
  const unsigned m = ((1u << b) - 1u) & ~((1u << a) - 1u);
  if constexpr (std::is_same_v<T, float> && B == 64) _mm512_mask_storeu_ps(p, (__mmask16)m, (__m512)v);
  else if constexpr (std::is_same_v<T, float> && B == 32) _mm256_mask_storeu_ps(p, (__mmask8)m, (__m256)v);
  else if constexpr (std::is_same_v<T, float>) _mm_mask_storeu_ps(p, (__mmask8)m, (__m128)v);
  else if constexpr (B == 64) _mm512_mask_storeu_pd(p, (__mmask8)m, (__m512d)v);
  else if constexpr (B == 32) _mm256_mask_storeu_pd(p, (__mmask8)m, (__m256d)v);
  else _mm_mask_storeu_pd(p, (__mmask8)m, (__m128d)v);
#elif defined(__AVX2__)
  const Mask<T, B> i = iota<T, B>();
  const Mask<T, B> m = (i >= static_cast<elem_t<Mask<T, B>>>(a)) & (i < static_cast<elem_t<Mask<T, B>>>(b));
  if constexpr (std::is_same_v<T, float> && B == 32) _mm256_maskstore_ps(p, (__m256i)m, (__m256)v);
  else if constexpr (std::is_same_v<T, float>) _mm_maskstore_ps(p, (__m128i)m, (__m128)v);
  else if constexpr (B == 32) _mm256_maskstore_pd(p, (__m256i)m, (__m256d)v);
  else _mm_maskstore_pd(p, (__m128i)m, (__m128d)v);
#else
  static_assert(sizeof(T) * lanes_of<V> == B);
  for (index_t i = a; i < b; ++i) p[i] = v[i];
#endif
}

// The first n lanes from p (0 <= n <= kLanes), the others 0. Reads nothing beyond p + n.
template <class T>
GK_ALWAYS_INLINE Vec<T> load_partial(const T* p, index_t n) {
  return load_lanes(p, 0, n);
}

// Stores the first n lanes of v to p (0 <= n <= kLanes). Writes nothing beyond p + n.
template <class V>
GK_ALWAYS_INLINE void store_partial(elem_t<V>* p, V v, index_t n) {
  store_lanes(p, v, 0, n);
}

// The first n lanes from p, the others 0: none for n <= 0, a whole vector (one plain
// load) for n >= kLanes. Reads nothing beyond p + n.
template <class T>
GK_ALWAYS_INLINE Vec<T> load_first(const T* p, index_t n) {
  if (n >= kLanes<T>) return load(p);
  return n > 0 ? load_partial(p, n) : Vec<T>{};
}

// Stores the first n lanes of v (any width): none for n <= 0, the whole vector (one
// plain store) for n >= its lane count. Writes nothing beyond p + n.
template <class V>
GK_ALWAYS_INLINE void store_first(elem_t<V>* p, V v, index_t n) {
  if (n >= lanes_of<V>) store(p, v);
  else if (n > 0) store_partial(p, v, n);
}

namespace detail {
template <class T>
struct Bytes {  // one uint8 per lane of a Vec<T>
  typedef std::uint8_t type __attribute__((vector_size(kLanes<T>)));
};
template <class T>
struct Int32s {  // one int32 per lane of a Vec<T>
  typedef std::int32_t type __attribute__((vector_size(4 * kLanes<T>)));
};
}  // namespace detail

// The first n bytes at p (n >= 0) widened to the lanes of a Mask<T>; the other lanes get `fill`.
template <class T>
GK_ALWAYS_INLINE Mask<T> load_bytes(const std::uint8_t* p, index_t n, std::uint8_t fill) {
  typename detail::Bytes<T>::type u;
  n = GK_ISA_NS::min<index_t>(n, kLanes<T>);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  // one masked load (a variable-length memcpy is a library call per row)
  const __m128i v = _mm_mask_loadu_epi8(_mm_set1_epi8(static_cast<char>(fill)),
                                        static_cast<__mmask16>((1u << n) - 1u), p);
  std::memcpy(&u, &v, sizeof(u));
#else
  for (index_t j = 0; j < kLanes<T>; ++j) u[j] = fill;
  std::memcpy(&u, p, static_cast<size_t>(n));
#endif
  return __builtin_convertvector(u, Mask<T>);
}

// The first n lanes (n >= 0) of c (values 0..255) narrowed to bytes at p.
template <class T>
GK_ALWAYS_INLINE void store_bytes(std::uint8_t* p, Mask<T> c, index_t n) {
  const auto u = __builtin_convertvector(c, typename detail::Bytes<T>::type);
  n = GK_ISA_NS::min<index_t>(n, kLanes<T>);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  __m128i v = _mm_setzero_si128();
  std::memcpy(&v, &u, sizeof(u));
  _mm_mask_storeu_epi8(p, static_cast<__mmask16>((1u << n) - 1u), v);
#else
  std::memcpy(p, &u, static_cast<size_t>(n));
#endif
}

// The first n lanes (n >= 0) of c as int32 at p.
template <class T>
GK_ALWAYS_INLINE void store_int32(std::int32_t* p, Mask<T> c, index_t n) {
  const auto u = __builtin_convertvector(c, typename detail::Int32s<T>::type);
  std::memcpy(p, &u, static_cast<size_t>(GK_ISA_NS::min<index_t>(n, kLanes<T>)) * sizeof(std::int32_t));
}

// True in lanes [0, n).
template <class T>
GK_ALWAYS_INLINE Mask<T> first_lanes(index_t n) {
  return iota<T>() < static_cast<elem_t<Mask<T>>>(n);
}

// ---- shuffles ---------------------------------------------------------------------------

// The 2L values (a, b) split into even and odd elements: ev = (a0, a2, ..., b0, b2, ...),
// od = (a1, a3, ..., b1, b3, ...). Any width.
template <class V>
GK_ALWAYS_INLINE void deinterleave(V a, V b, V& ev, V& od) {
  constexpr int L = lanes_of<V>;
  mask_of<V> me, mo;
  for (int j = 0; j < L; ++j) {
    me[j] = static_cast<elem_t<mask_of<V>>>(2 * j);
    mo[j] = static_cast<elem_t<mask_of<V>>>(2 * j + 1);
  }
  ev = __builtin_shuffle(a, b, me);
  od = __builtin_shuffle(a, b, mo);
}

// (e0, o0, e1, o1, ...) as two vectors lo, hi: the inverse of deinterleave. Any width.
template <class V>
GK_ALWAYS_INLINE void interleave(V e, V o, V& lo, V& hi) {
  constexpr int L = lanes_of<V>;
  mask_of<V> ml, mh;
  for (int j = 0; j < L; ++j) {
    ml[j] = static_cast<elem_t<mask_of<V>>>((j % 2 == 0 ? 0 : L) + j / 2);
    mh[j] = static_cast<elem_t<mask_of<V>>>((j % 2 == 0 ? 0 : L) + L / 2 + j / 2);
  }
  lo = __builtin_shuffle(e, o, ml);
  hi = __builtin_shuffle(e, o, mh);
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

// a < b ? a : b (kMax: a > b ? a : b) in every lane, so b where either is NaN: x86's
// minps / maxps, one instruction on AVX2 / AVX-512 (GCC keeps the ternary as compare + blend).
template <bool kMax, class V>
GK_ALWAYS_INLINE V min_max_x86(V a, V b) {
  using T = elem_t<V>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    return (V)(kMax ? _mm512_max_ps((__m512)a, (__m512)b) : _mm512_min_ps((__m512)a, (__m512)b));
  } else {
    return (V)(kMax ? _mm512_max_pd((__m512d)a, (__m512d)b) : _mm512_min_pd((__m512d)a, (__m512d)b));
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    return (V)(kMax ? _mm256_max_ps((__m256)a, (__m256)b) : _mm256_min_ps((__m256)a, (__m256)b));
  } else {
    return (V)(kMax ? _mm256_max_pd((__m256d)a, (__m256d)b) : _mm256_min_pd((__m256d)a, (__m256d)b));
  }
#else
  (void)sizeof(T);
  if constexpr (kMax) return a > b ? a : b;
  else return a < b ? a : b;
#endif
}

// Clamps keeping NaN lanes NaN: min(x, hi), max(x, lo) and both, one min_ps / max_ps each.
template <class V>
GK_ALWAYS_INLINE V clamp_hi(V x, elem_t<V> hi) {
  return min_max_x86<false>(set1(hi), x);
}
template <class V>
GK_ALWAYS_INLINE V clamp_lo(V x, elem_t<V> lo) {
  return min_max_x86<true>(set1(lo), x);
}
template <class V>
GK_ALWAYS_INLINE V clamp(V x, elem_t<V> lo, elem_t<V> hi) {
  return min_max_x86<false>(set1(hi), min_max_x86<true>(set1(lo), x));
}

template <class V>
GK_ALWAYS_INLINE auto sign_mask() {
  using T = elem_t<V>;
  using I = elem_t<Mask<T>>;
  constexpr I kMin = std::numeric_limits<I>::min();  // constant: no call out of the ISA namespace
  return mask_set1<T>(kMin);
}

template <class V>
GK_ALWAYS_INLINE V abs(V v) {
  return from_bits<elem_t<V>>(bits(v) & ~sign_mask<V>());
}

// |mag| with the sign of sgn.
template <class V>
GK_ALWAYS_INLINE V copysign(V mag, V sgn) {
#if defined(__AVX512F__)
  // One bitwise select (GCC emits an and plus a ternlog for the expression below).
  return (V)_mm512_ternarylogic_epi32((__m512i)mag, (__m512i)sgn, (__m512i)sign_mask<V>(), 0xD8);
#else
  return from_bits<elem_t<V>>((bits(mag) & ~sign_mask<V>()) | (bits(sgn) & sign_mask<V>()));
#endif
}

// neg where the sign bit of x is set (x < 0, -0, NaNs with the sign bit), pos
// elsewhere: one blendv on AVX2 (no comparison), a vpmovd2m + blend on AVX-512.
GK_ALWAYS_INLINE Vec<float> select_sign(Vec<float> x, Vec<float> neg, Vec<float> pos) {
#if defined(__AVX512F__)
  return (Vec<float>)_mm512_mask_blend_ps(_mm512_movepi32_mask((__m512i)x), (__m512)pos, (__m512)neg);
#elif defined(__AVX2__)
  return (Vec<float>)_mm256_blendv_ps((__m256)pos, (__m256)neg, (__m256)x);
#else
  return bits(x) < 0 ? neg : pos;
#endif
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

// 1 / d and n / d for d in [1, 2^20] (or NaN), n finite. AVX-512: the 14-bit
// hardware estimate refined by one Newton-Raphson step, r + r (1 - d r) (1 - d r is
// small and exact, one FMA, so only the last addition rounds), within ~0.5 ULP,
// and the quotient from it corrected once by its residual n - q d (~0.5 ULP plus
// 2^-28 relative): a few FMAs, cheaper than vdivps zmm (one per 10-16 cycles).
// AVX2 and narrower: the hardware division, correctly rounded. Its divider runs
// beside the FMA ports (vdivps ymm: one per 5 cycles on Skylake and later Intel
// cores, per 3.5 on Zen 2-4), so in the activations it costs less than the five
// FMA-port operations of a refined 12-bit estimate: AVX2 sigmoid 16M floats went
// from 41 to 54 GB/s (relu 57) on a Xeon. Haswell and Broadwell divide more slowly
// (one per 10-14 cycles); there the estimate would be the faster of the two.
template <class V>
GK_ALWAYS_INLINE V recip(V d) {
  using T = elem_t<V>;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const V r = (V)_mm512_rcp14_ps((__m512)d);
    return r + r * (T(1) - d * r);
  }
#endif
  return T(1) / d;
}

template <class V>
GK_ALWAYS_INLINE V div(V n, V d) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<elem_t<V>, float>) {
    const V r = (V)_mm512_rcp14_ps((__m512)d);
    const V q = n * r;
    return q + (n - q * d) * r;
  }
#endif
  return n / d;
}

// Applies a scalar function to every lane (the double math below).
template <class V, class F>
GK_ALWAYS_INLINE V map_lanes(V v, F f) {
  for (int i = 0; i < static_cast<int>(sizeof(V) / sizeof(v[0])); ++i) v[i] = f(v[i]);
  return v;
}

// a * b + c in one rounding on AVX2 and AVX-512, whatever the compiler contracts (the GEMM's
// chains of FMAs); elsewhere a * b + c (two roundings on x86's generic ISA).
template <class V>
GK_ALWAYS_INLINE V fmadd(V a, V b, V c) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<elem_t<V>, float>) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  else return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<elem_t<V>, float>) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  else return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return a * b + c;
#endif
}

// sqrt of every lane, correctly rounded (one instruction per vector). T is not deduced
// (simd::sqrt<T>(x)), so a scalar sqrt call never lands here.
template <class T>
GK_ALWAYS_INLINE Vec<T> sqrt(Vec<T> x) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm512_sqrt_ps((__m512)x);
  else return (Vec<T>)_mm512_sqrt_pd((__m512d)x);
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm256_sqrt_ps((__m256)x);
  else return (Vec<T>)_mm256_sqrt_pd((__m256d)x);
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) return (Vec<T>)_mm_sqrt_ps((__m128)x);
  else return (Vec<T>)_mm_sqrt_pd((__m128d)x);
#else
  return map_lanes(x, [](T v) { return std::sqrt(v); });
#endif
}

// a * m for lanes a < 2^32: one unsigned 32x32 -> 64-bit multiply per lane (pmuludq)
// where the compiler would otherwise emulate a 64-bit product.
GK_ALWAYS_INLINE Vec<std::uint64_t> mul_lo32(Vec<std::uint64_t> a, std::uint32_t m) {
#if defined(__AVX512F__)
  return (Vec<std::uint64_t>)_mm512_mul_epu32((__m512i)a, _mm512_set1_epi64(m));
#elif defined(__AVX2__)
  return (Vec<std::uint64_t>)_mm256_mul_epu32((__m256i)a, _mm256_set1_epi64x(m));
#elif defined(__SSE2__)
  return (Vec<std::uint64_t>)_mm_mul_epu32((__m128i)a, _mm_set1_epi64x(m));
#else
  return a * static_cast<std::uint64_t>(m);
#endif
}

// ---- lane bits: compress and expand ---------------------------------------------------------

// Lane i of m (a comparison result) as bit i.
GK_ALWAYS_INLINE unsigned bitmask(Mask<float> m) {
#if defined(__AVX512F__)
  return _mm512_movepi32_mask((__m512i)m);
#elif defined(__AVX2__)
  return static_cast<unsigned>(_mm256_movemask_ps((__m256)m));
#else
  unsigned b = 0;
  for (int i = 0; i < kLanes<float>; ++i) b |= (m[i] < 0 ? 1u : 0u) << i;
  return b;
#endif
}

// !(a < b) in every lane: true where either is NaN (AVX2: one vcmpnltps, where GCC
// would compare and negate).
template <class V>
GK_ALWAYS_INLINE mask_of<V> not_less(V a, V b) {
#if defined(__AVX2__) && !defined(__AVX512F__)
  if constexpr (std::is_same_v<elem_t<V>, float> && sizeof(V) == 32) {
    return (mask_of<V>)_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_NLT_UQ);
  }
#endif
  return ~(a < b);
}

#if defined(__AVX2__) && !defined(__AVX512F__)
namespace detail {
// For each 8-bit lane mask m: kCompress[m] lists the set lanes first (byte k = the k-th
// set lane); kExpand[m] gives each set lane its rank among them (byte b = rank of lane b).
struct LaneBytes {
  std::uint64_t v[256];
};
constexpr LaneBytes lane_bytes(bool expand) {
  LaneBytes t{};
  for (int m = 0; m < 256; ++m) {
    int k = 0;
    for (int b = 0; b < 8; ++b) {
      if ((m >> b) & 1) {
        t.v[m] |= std::uint64_t(expand ? k : b) << (8 * (expand ? b : k));
        ++k;
      }
    }
  }
  return t;
}
alignas(64) inline constexpr LaneBytes kCompress = lane_bytes(false);
alignas(64) inline constexpr LaneBytes kExpand = lane_bytes(true);

GK_ALWAYS_INLINE __m256i lane_perm(const LaneBytes& t, unsigned m) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&t.v[m])));
}
}  // namespace detail
#endif

// The lanes of v whose bit is set in m, packed in lane order at p (popcount(m) values); may
// write a whole vector at p (AVX2: one permutation and one store; AVX-512: vcompressps).
GK_ALWAYS_INLINE void compress_store(float* p, Vec<float> v, unsigned m) {
#if defined(__AVX512F__)
  _mm512_mask_compressstoreu_ps(p, static_cast<__mmask16>(m), (__m512)v);
#elif defined(__AVX2__)
  _mm256_storeu_ps(p, _mm256_permutevar8x32_ps((__m256)v, detail::lane_perm(detail::kCompress, m)));
#else
  int k = 0;
  for (int i = 0; i < kLanes<float>; ++i) {
    if ((m >> i) & 1u) p[k++] = v[i];
  }
#endif
}

// v with the lanes whose bit is set in m replaced, in lane order, by p[0], p[1], ...: the
// inverse of compress_store (may read a whole vector at p).
GK_ALWAYS_INLINE Vec<float> expand_load(Vec<float> v, const float* p, unsigned m) {
#if defined(__AVX512F__)
  return (Vec<float>)_mm512_mask_expandloadu_ps((__m512)v, static_cast<__mmask16>(m), p);
#elif defined(__AVX2__)
  const __m256 t = _mm256_permutevar8x32_ps(_mm256_loadu_ps(p), detail::lane_perm(detail::kExpand, m));
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i sel = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(m)), lane_bit), lane_bit);
  return (Vec<float>)_mm256_blendv_ps((__m256)v, t, _mm256_castsi256_ps(sel));
#else
  int k = 0;
  for (int i = 0; i < kLanes<float>; ++i) {
    if ((m >> i) & 1u) v[i] = p[k++];
  }
  return v;
#endif
}

}  // namespace gk::GK_ISA_NS::simd
