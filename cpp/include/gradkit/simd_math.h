// Vector math on the vectors of gradkit/simd.h (in the same namespace, gk::GK_ISA_NS::simd):
// exp, expm1, sigmoid, tanh, the normal tail and density, GELU and GELU', float and double.
//
// float math uses range-reduced polynomials (Cephes coefficients for exp and
// erfc; own minimax fits for tanh, sigmoid and GELU's piecewise Phi), accurate
// to a few ULP including denormal results, with NaN propagated and +-inf
// handled; double math calls libm per lane (correct first, float is the fast path).
// Measured max errors vs float64 (cpp/tools/ulp_sweep.py) over every float32 in
// the range (tanh on [-9.5, 9.5], sigmoid on [-110, 110], GELU on [-16, 16];
// AVX-512 / AVX2 / generic; GELU every 5th float): tanh 3.1 / 3.1 / 3.2, sigmoid
// 2.8 / 2.4 / 2.4, GELU 3.1 / 3.1 / 6.7 ULP; elu 1.2 (tests/test_activation.py sweeps);
// GELU' (every 5th float in [-16, 16]) within 0.47 / 0.29 / 1.34 * 2^-23 (|GELU'| + 1).
// Cost per vector (llvm-mca, -mcpu=znver3 / icelake-server, AVX2 loops): tanh 10.9 / 10.8
// cycles, sigmoid 12.2 / 10.9, GELU's fast path 17.1 / 9.2 (vpermps takes two cycles of
// Zen 3's FP1 pipe), its tail 22.7 / 17.2, GELU' tail 20.5 / 16.7 (gelu_grad_general: 64).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "gradkit/simd.h"

namespace gk::GK_ISA_NS::simd {

// ---- float math ----------------------------------------------------------------------------
namespace detail {

// How exp_f32 applies 2^n (off AVX-512, where one vscalefps does it):
//   full:        any n in [-150, 128], in two steps (2^floor(n/2) 2^ceil(n/2)) so
//                that results down to the smallest denormal round once;
//   nonpositive: hi + lo <= 0 (n in [-150, 0]): the polynomial's coefficients carry
//                a factor 2^-24 (exact, but for terms far below p's last bit that
//                may turn denormal) and 2^(n + 24) is normal, so one multiplication rounds
//                once, denormals included (the exponent bias, + 24, is folded into
//                the rounding constant: two operations instead of nine).
enum class ExpRange { full, nonpositive };

// mul * exp(hi + lo) for hi + lo in [-104, 89] (callers clamp or select):
// Cody-Waite reduction x = n ln2 + r with a 9-bit ln2_hi (n * ln2_hi exact, so
// hi - n ln2_hi is exact even for |hi| ~ 100), a degree-7 polynomial on
// |r| <= ln2/2 (own minimax fit, 1.2 * 2^-24 relative evaluated in float;
// 6 FMAs), then 2^n applied as kRange says. `lo` carries a small
// correction term (the low part of -x^2/2) and `mul` a prefactor applied
// before the final scaling (so products that underflow round only once).
template <bool kLo, bool kMul, ExpRange kRange = ExpRange::full>
GK_ALWAYS_INLINE Vec<float> exp_f32(Vec<float> hi, Vec<float> lo, Vec<float> mul) {
  using V = Vec<float>;
#if defined(__AVX512F__)
  constexpr bool kFolded = false;
#else
  constexpr bool kFolded = kRange == ExpRange::nonpositive;
#endif
  constexpr float kBias = kFolded ? 127.0f + 24.0f : 0.0f;  // 2^(n + 24) from the bits of nf
  constexpr float kS = kFolded ? 0x1p-24f : 1.0f;           // ... and 2^-24 in the polynomial
  const V magic = set1(12582912.0f + kBias);  // 1.5 * 2^23 (+ bias): adding it rounds to an integer
  V sum = hi;
  if constexpr (kLo) sum = hi + lo;
  const V nf = sum * 1.44269504088896341f + magic;
  const V nv = nf - magic;
  V r = hi - nv * 0.693359375f;
  r = r - nv * -2.12194440e-4f;
  if constexpr (kLo) r = r + lo;
  V p = set1(kS * 1.3768305070698261e-3f);
  p = p * r + kS * 8.361367508769035e-3f;
  p = p * r + kS * 4.1668474674224854e-2f;
  p = p * r + kS * 1.6666586697101593e-1f;
  p = p * r + kS * 0.5f;
  p = p * r + kS * 1.0f;
  p = p * r + kS * 1.0f;
  if constexpr (kMul) p = p * mul;
#if defined(__AVX512F__)
  // p * 2^n rounded once, denormal and zero results included: one vscalefps
  // replaces the integer exponent arithmetic and both multiplications.
  return (V)_mm512_scalef_ps((__m512)p, (__m512)nv);
#else
  if constexpr (kFolded) return p * from_bits<float>(bits(nf) << 23);  // 2^(n + 24), n + 151 in [1, 151]
  const Mask<float> n = bits(nf) - bits(magic);
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

namespace detail {

// 2^k as a float from n = k + 127 + 1.5 * 2^23 (a magic-biased rounding with
// the exponent bias folded in), for integer k in [-126, 127].
GK_ALWAYS_INLINE Vec<float> pow2_biased(Vec<float> n) {
  return from_bits<float>(bits(n) << 23);
}

}  // namespace detail

// 1 / (1 + exp(-x)) from e = exp(-|x|) (never overflows), clamped at -104
// (where it rounds to 0) and computed by exp_f32 with ExpRange::nonpositive
// (denormal results, x down to -103.3, round once); then sigmoid(|x|) = 1 / (1 + e)
// (exactly 1 once e < 2^-25) and sigmoid(-|x|) = e / (1 + e) for negative x (no 1 - s
// cancellation either way): on AVX-512 y = recip(1 + e) and e y, about 19 vector
// operations; elsewhere one division of e or 1, about 17 plus the division.
GK_ALWAYS_INLINE Vec<float> sigmoid(Vec<float> x) {
  using V = Vec<float>;
  const V z = clamp_lo(from_bits<float>(bits(x) | sign_mask<V>()), detail::kExpMin);  // -|x|, NaN kept
  const V e = detail::exp_f32<false, false, detail::ExpRange::nonpositive>(z, z, z);
#if defined(__AVX512F__)
  const V y = recip(1.0f + e);  // divisor in [1, 2]
  return select_sign(x, e * y, y);
#else
  // One division of e or 1 by 1 + e: one rounding, and one multiplication less than
  // e times the reciprocal (AVX2 on Zen 3: 4.14 -> 3.83 ns a vector in L1).
  return div(select_sign(x, e, set1(1.0f)), 1.0f + e);
#endif
}

// tanh(x) = -sign(x) m / (2 + m) with m = expm1(-2z), z = min(|x|, 9.02)
// (tanh rounds to 1 from 9.0109): one formula for the whole range, no
// cancellation (m in (-1, 0], 2 + m in (1, 2]). -2z = k ln2 + u, |u| <= ln2/2:
// with t = z + k ln2/2 (so u = -2t), m = 2^k (expm1(-2t)) + (2^k - 1) and
// expm1(-2t) = t P(t), P a degree-5 minimax fit (own coefficients, P(0) = -2).
// -0 stays -0 (m = -0 * ... ), NaN stays NaN. About 19 operations on AVX-512.
GK_ALWAYS_INLINE Vec<float> tanh(Vec<float> x) {
  using V = Vec<float>;
  const V magic = set1(12582912.0f + 127.0f);  // rounds to an integer, exponent bias folded in
  const V z = clamp_hi(abs(x), 9.02f);  // NaN kept
  const V nf = z * -2.88539008177792681f + magic;  // k + 127 + 1.5 * 2^23, k in [-26, 0]
  const V s = detail::pow2_biased(nf);             // 2^k
  const V k = nf - magic;
  const V t = k * 0.346573590279972655f + z;  // |t| <= ln2/4
  V p = set1(9.228120744228363e-2f);
  p = p * t - 2.683073878288269e-1f;
  p = p * t + 6.665363311767578e-1f;
  p = p * t - 1.333307147026062f;
  p = p * t + 2.0000009536743164f;
  p = p * t - 2.0f;
  const V m = p * (t * s) + (s - 1.0f);   // expm1(-2z) in (-1, 0]
  const V y = div(m, m + 2.0f);           // -tanh(z)
  return copysign(y, x);
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

// ---- GELU (after the double math: gelu_general calls normal_tail of both types) -----------------

// x Phi(x) (GELU), any x: q = x Phi(-|x|)
// without cancellation, y = q for x < 0 and x - q for x >= 0; x is clamped
// inside (q underflows there already) so that +-inf give inf and -0.
template <class V>
GK_ALWAYS_INLINE V gelu_general(V x) {
  using T = elem_t<V>;
  const V xc = clamp(x, -kNormalClamp<T>, kNormalClamp<T>);
  const V q = normal_tail(xc, xc);
  return x >= T(0) ? x - q : q;
}

#if defined(__AVX512F__)
namespace detail {
// Phi(x) on x in [-4.125, 3.875) in 32 pieces of width 1/4: piece j covers
// 4x + 16 in [j - 1/2, j + 1/2], Phi = sum_k kPhiPiece[k][j] w^k with
// w = 4x + 16 - j. Own minimax fits (relative error, float coefficients fixed
// one at a time); x Phi(x) evaluated in float is within 2.2 ULP for |x| < 3.875.
alignas(64) inline constexpr float kPhiPiece[7][32] = {
    {  // w^0
     3.16712394e-05f, 8.84172841e-05f, 0.000232629085f, 0.000577025057f, 0.00134989806f, 0.00297976309f, 0.00620966544f, 0.0122244731f,
     0.0227501318f, 0.0400591567f, 0.066807203f, 0.105649777f, 0.158655256f, 0.22662735f, 0.308537543f, 0.401293665f,
     0.5f, 0.598706305f, 0.691462457f, 0.77337265f, 0.841344774f, 0.894350231f, 0.93319279f, 0.959940851f,
     0.977249861f, 0.987775505f, 0.993790329f, 0.997020245f, 0.998650074f, 0.999422967f, 0.999767363f, 0.999911606f,
    },
    {  // w^1
     3.34575561e-05f, 8.81489177e-05f, 0.00021817068f, 0.000507262012f, 0.0011079621f, 0.00227339054f, 0.00438207528f, 0.00793491304f,
     0.0134977419f, 0.0215693302f, 0.0323794f, 0.0456622727f, 0.0604926795f, 0.0752843618f, 0.0880163312f, 0.096667029f,
     0.0997355729f, 0.096667029f, 0.0880163312f, 0.0752843544f, 0.0604926795f, 0.0456622727f, 0.0323794f, 0.0215693302f,
     0.0134977419f, 0.00793491304f, 0.00438207528f, 0.00227339054f, 0.0011079621f, 0.000507262012f, 0.000218170666f, 8.81489177e-05f,
    },
    {  // w^2
     1.67287799e-05f, 4.13198068e-05f, 9.54496718e-05f, 0.000206075187f, 0.000415485789f, 0.000781478011f, 0.00136939844f, 0.00223169429f,
     0.00337443547f, 0.00471829064f, 0.00607113726f, 0.00713473f, 0.0075615854f, 0.00705790846f, 0.0055010207f, 0.00302084466f,
     -1.02057196e-10f, -0.00302084466f, -0.0055010207f, -0.00705790846f, -0.00756158493f, -0.00713473f, -0.00607113726f, -0.00471829064f,
     -0.00337443547f, -0.00223169429f, -0.00136939844f, -0.000781478011f, -0.000415485789f, -0.000206075187f, -9.54496718e-05f, -4.13198104e-05f,
    },
    {  // w^3
     5.22769278e-06f, 1.19941642e-05f, 2.55668019e-05f, 5.05281059e-05f, 9.2330316e-05f, 0.000155407877f, 0.00023964516f, 0.000335787685f,
     0.00042180458f, 0.000463403383f, 0.000421605975f, 0.000267551164f, -1.26051269e-09f, -0.000343093358f, -0.000687627005f, -0.000944011845f,
     -0.00103890954f, -0.000944011845f, -0.000687626831f, -0.000343093503f, -1.61244307e-09f, 0.000267550669f, 0.000421605597f, 0.000463403179f,
     0.000421804667f, 0.000335787889f, 0.000239645291f, 0.000155407935f, 9.23303523e-05f, 5.05280805e-05f, 2.55668274e-05f, 1.19941578e-05f,
    },
    {  // w^4
     1.13267731e-06f, 2.38073858e-06f, 4.59850253e-06f, 8.11689733e-06f, 1.29838791e-05f, 1.85700937e-05f, 2.31795784e-05f, 2.39728943e-05f,
     1.75749592e-05f, 1.53615031e-06f, -2.37150689e-05f, -5.34170213e-05f, -7.87658209e-05f, -8.96019192e-05f, -7.87910831e-05f, -4.6216981e-05f,
     6.03411376e-10f, 4.6217614e-05f, 7.87906683e-05f, 8.96021375e-05f, 7.87663157e-05f, 5.34174869e-05f, 2.37154145e-05f, -1.53582221e-06f,
     -1.75751211e-05f, -2.39732472e-05f, -2.3179904e-05f, -1.85703029e-05f, -1.29839527e-05f, -8.11690825e-06f, -4.59852026e-06f, -2.38070857e-06f,
    },
    {  // w^5
     1.78111563e-07f, 3.34629107e-07f, 5.65690186e-07f, 8.44831959e-07f, 1.08014751e-06f, 1.09246309e-06f, 6.45084185e-07f, -4.56384015e-07f,
     -2.19926164e-06f, -4.20647984e-06f, -5.71975306e-06f, -5.83023302e-06f, -3.92215634e-06f, -1.3636398e-07f, 4.46996773e-06f, 8.2502338e-06f,
     9.71148802e-06f, 8.25015468e-06f, 4.46894819e-06f, -1.35551346e-07f, -3.92032325e-06f, -5.82788334e-06f, -5.7182333e-06f, -4.2056904e-06f,
     -2.19959361e-06f, -4.57152254e-07f, 6.44759155e-07f, 1.09231382e-06f, 1.08004269e-06f, 8.4497708e-07f, 5.65560413e-07f, 3.34641555e-07f,
    },
    {  // w^6
     2.01600905e-08f, 3.23034399e-08f, 4.39864962e-08f, 4.67159609e-08f, 2.70927369e-08f, -2.85628801e-08f, -1.23953726e-07f, -2.40118851e-07f,
     -3.28024186e-07f, -3.20521906e-07f, -1.62551402e-07f, 1.3646445e-07f, 4.87078751e-07f, 7.38456151e-07f, 7.50088873e-07f, 4.68938453e-07f,
     -2.12626983e-09f, -4.71292537e-07f, -7.48486173e-07f, -7.40182088e-07f, -4.90953198e-07f, -1.40509812e-07f, 1.59812728e-07f, 3.18792047e-07f,
     3.28862853e-07f, 2.41755714e-07f, 1.2555094e-07f, 2.94275129e-08f, -2.68306533e-08f, -4.667708e-08f, -4.39236274e-08f, -3.23687672e-08f,
    },
};
}  // namespace detail
#endif

#if defined(__AVX512F__)
namespace detail {
// GELU'(x) = Phi(x) + x phi(x) on the same 32 pieces as kPhiPiece: degree-6 least-squares
// fits in float64 (coefficients rounded to float one at a time, the rest refitted);
// within 0.5 * 2^-23 (|GELU'| + 1) in float.
alignas(64) inline constexpr float kGeluGradPiece[7][32] = {
    {  // w^0
     -0.00050364964f, -0.0012338165f, -0.0028217603f, -0.0060173813f, -0.011945647f, -0.022027534f, -0.037611086f, -0.059189744f,
     -0.0852318f, -0.11092615f, -0.1274692f, -0.12266158f, -0.08331547f, 0.00077427825f, 0.13250488f, 0.30462664f,
     0.5f, 0.69537336f, 0.8674951f, 0.99922574f, 1.0833155f, 1.1226616f, 1.1274692f, 1.1109262f,
     1.0852318f, 1.0591898f, 1.0376111f, 1.0220275f, 1.0119456f, 1.0060173f, 1.0028218f, 1.0012338f,
    },
    {  // w^1
     -0.00046840578f, -0.0010632963f, -0.0022362494f, -0.004343431f, -0.0077557345f, -0.012645735f, -0.01862382f, -0.02430067f,
     -0.026995484f, -0.022917412f, -0.00809485f, 0.019977244f, 0.060492683f, 0.10822126f, 0.15402858f, 0.18729237f,
     0.19947115f, 0.18729237f, 0.15402858f, 0.10822126f, 0.060492683f, 0.019977244f, -0.00809485f, -0.022917412f,
     -0.026995484f, -0.02430067f, -0.01862382f, -0.012645735f, -0.0077557345f, -0.004343431f, -0.0022362494f, -0.0010632963f,
    },
    {  // w^2
     -0.00020074596f, -0.00041578154f, -0.00078746345f, -0.0013523619f, -0.0020774296f, -0.0027840207f, -0.0030811462f, -0.0023711638f,
     8.203064e-08f, 0.0044234046f, 0.010624659f, 0.017390907f, 0.02268471f, 0.02426156f, 0.020628644f, 0.011894628f,
     -7.816913e-17f, -0.011894628f, -0.020628644f, -0.024262061f, -0.022685515f, -0.017391175f, -0.010624123f, -0.0044234046f,
     7.2223077e-07f, 0.0023692872f, 0.0030796716f, 0.002785495f, 0.0020789376f, 0.0013543055f, 0.00078592193f, 0.00041579411f,
    },
    {  // w^3
     -5.15807e-05f, -9.486762e-05f, -0.00015524872f, -0.00021996752f, -0.0002539119f, -0.00019546066f, 3.1388994e-05f, 0.00048010595f,
     0.001124824f, 0.0018106023f, 0.002255596f, 0.0021385525f, 0.0012602224f, -0.0002971218f, -0.0021201705f, -0.003591148f,
     -0.0041557145f, -0.003591148f, -0.0021201705f, -0.0002971218f, 0.0012602224f, 0.0021385525f, 0.002255596f, 0.0018106023f,
     0.001124824f, 0.00048010595f, 3.1388994e-05f, -0.00019546066f, -0.0002539119f, -0.00021996752f, -0.00015524872f, -9.486762e-05f,
    },
    {  // w^4
     -8.533254e-06f, -1.3133303e-05f, -1.6528455e-05f, -1.44178375e-05f, 5.54196e-09f, 3.2592638e-05f, 8.335555e-05f, 0.00014006265f,
     0.0001750301f, 0.00015496914f, 5.1870986e-05f, -0.0001209421f, -0.00031466773f, -0.00044584987f, -0.00043710202f, -0.0002729101f,
     1.2488885e-15f, 0.0002729101f, 0.00043710202f, 0.00045025873f, 0.00032174675f, 0.00012330177f, -5.6590325e-05f, -0.00015496914f,
     -0.00018210408f, -0.00012355666f, -7.0386144e-05f, -4.5559125e-05f, -1.3269913e-05f, -2.6780738e-06f, 3.0087054e-05f, 1.3022694e-05f,
    },
    {  // w^5
     -8.6691296e-07f, -9.009919e-07f, -3.024078e-07f, 1.4322358e-06f, 4.5624593e-06f, 8.490425e-06f, 1.13807055e-05f, 1.0339438e-05f,
     2.5538295e-06f, -1.1824681e-05f, -2.8568671e-05f, -3.9180442e-05f, -3.5201152e-05f, -1.4216051e-05f, 1.779713e-05f, 4.657435e-05f,
     5.8495367e-05f, 4.657435e-05f, 1.779713e-05f, -1.4216051e-05f, -3.5201152e-05f, -3.9180442e-05f, -2.8568671e-05f, -1.1824681e-05f,
     2.5538295e-06f, 1.0339438e-05f, 1.13807055e-05f, 8.490425e-06f, 4.5624593e-06f, 1.4322358e-06f, -3.024078e-07f, -9.009919e-07f,
    },
    {  // w^6
     -4.647555e-08f, 1.1581038e-08f, 1.0094615e-07f, 5.497171e-07f, 6.073874e-07f, 5.255305e-07f, 2.491735e-07f, -4.368902e-07f,
     -1.15992435e-07f, -2.6375048e-06f, 1.1409031e-06f, -6.822343e-07f, 1.1468301e-06f, 4.721194e-06f, 1.5042417e-06f, 4.832426e-06f,
     -4.237782e-15f, -4.832426e-06f, -1.5042417e-06f, -1.5635358e-05f, -1.8669147e-05f, -5.158515e-06f, 1.054063e-05f, 2.6375048e-06f,
     1.7623785e-05f, -4.0414714e-05f, -3.2348064e-05f, 3.156493e-05f, 3.2221615e-05f, 4.1762094e-05f, -3.3657936e-05f, 2.62203e-07f,
    },
};

}  // namespace detail
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
namespace detail {
// Phi(-a) for a = |x| in [0, 3.75) in 8 pieces of width 1/2 (one vpermps per
// coefficient): piece j covers 2a in [j - 1/2, j + 1/2], Phi(-a) = sum_k
// kPhiTail8[k][j] w^k with w = 2a - j; degree 7, minimax in relative error
// (1e-8 of Phi(-a) in float64; with the float coefficients, each rounded in turn
// and the higher ones refitted, evaluated in float: 2.6 * 2^-24).
// kGeluGrad8: Phi(-a) - a phi(a) on the same pieces, degree 6, minimax in absolute
// error (0.17 * 2^-23 in float). Both from cpp/tools/fit_gelu_pieces.py.
alignas(32) inline constexpr float kPhiTail8[8][8] = {
    {0.5f, 0.308537543f, 0.158655256f, 0.066807203f, 0.0227501318f, 0.00620966544f, 0.00134989806f, 0.000232629085f},  // w^0
    {-0.199471146f, -0.176032662f, -0.120985366f, -0.0647588f, -0.0269954838f, -0.00876415055f, -0.00221592421f, -0.000436341361f},  // w^1
    {2.15940105e-07f, 0.0220037848f, 0.030246187f, 0.0242844243f, 0.0134977549f, 0.0054775849f, 0.00166194094f, 0.000381798105f},  // w^2
    {0.00830854475f, 0.00550110266f, 1.80814354e-07f, -0.00337272161f, -0.00337443035f, -0.0019171423f, -0.000738639559f, -0.000204534022f},  // w^3
    {1.61894222e-05f, -0.00125740841f, -0.00125859724f, -0.000378127006f, 0.000281038869f, 0.000370981317f, 0.000207774196f, 7.35837893e-05f},  // w^4
    {-0.000359945581f, -0.000144455742f, 0.00012434469f, 0.000182028962f, 7.03229598e-05f, -2.09774062e-05f, -3.46483357e-05f, -1.80925836e-05f},  // w^5
    {7.09951419e-05f, 3.89268243e-05f, 2.69044522e-05f, -1.36145845e-05f, -2.05118286e-05f, -8.33244758e-06f, 1.59551689e-06f, 2.78764992e-06f},  // w^6
    {-3.17061713e-05f, 6.11632458e-06f, -1.75756918e-06f, -7.39619963e-07f, 7.53671088e-07f, 2.42978149e-06f, 7.33853653e-07f, -1.33808967e-07f},  // w^7
};
alignas(32) inline constexpr float kGeluGrad8[7][8] = {
    {0.5f, 0.13250488f, -0.0833154693f, -0.127469197f, -0.0852318034f, -0.0376110859f, -0.0119456472f, -0.00282176048f},  // w^0
    {-0.398942292f, -0.308057159f, -0.120985448f, 0.0161897f, 0.0539909899f, 0.0372476578f, 0.0155114653f, 0.00447249366f},  // w^1
    {4.25656367e-07f, 0.0825149715f, 0.0907389894f, 0.0424981453f, 6.42713687e-08f, -0.0123245977f, -0.00830972008f, -0.00314983469f},  // w^2
    {0.0332398638f, 0.016961297f, -0.0100792106f, -0.0180442426f, -0.00899948552f, -0.000251702499f, 0.00203140895f, 0.00124216324f},  // w^3
    {3.0683972e-05f, -0.00701591047f, -0.00504078018f, 0.000851999561f, 0.0028115164f, 0.00133396569f, 8.13212466e-08f, -0.000265022885f},  // w^4
    {-0.00195965613f, -0.000568671676f, 0.00111045688f, 0.00090882933f, -7.54882203e-05f, -0.000360398786f, -0.000146628445f, 8.49713615e-06f},  // w^5
    {0.000129484048f, 0.000341298612f, 0.00013557123f, -0.000157212286f, -0.000120320903f, 1.43156085e-05f, 3.93429145e-05f, 1.17923728e-05f},  // w^6
};
}  // namespace detail
#endif

#if defined(__AVX2__) || defined(__AVX512F__)
namespace detail {
// Piecewise polynomials, one table lookup per coefficient: tab[k][j] is the w^k
// coefficient of piece j; a lane's piece is given by the low bits of idx. AVX-512:
// 32 pieces, vpermt2ps over two registers; AVX2: 8 pieces, vpermps.
#if defined(__AVX512F__)
constexpr int kPieces = 32;
GK_ALWAYS_INLINE Vec<float> lookup(const float (&t)[kPieces], Mask<float> idx) {
  return (Vec<float>)_mm512_permutex2var_ps(_mm512_load_ps(t), (__m512i)idx, _mm512_load_ps(t + 16));
}
#else
constexpr int kPieces = 8;
GK_ALWAYS_INLINE Vec<float> lookup(const float (&t)[kPieces], Mask<float> idx) {
  return (Vec<float>)_mm256_permutevar8x32_ps(_mm256_load_ps(t), (__m256i)idx);
}
#endif

// sum_k tab[k][j] w^k for each lane's piece j (Horner: K lookups, K - 1 FMAs).
template <int K>
GK_ALWAYS_INLINE Vec<float> piece_poly(const float (&tab)[K][kPieces], Mask<float> idx, Vec<float> w) {
  Vec<float> p = lookup(tab[K - 1], idx);
#pragma GCC unroll 16
  for (int k = K - 2; k >= 0; --k) p = p * w + lookup(tab[k], idx);
  return p;
}

// scale * v = j - kOffset + w with j an integer (the piece, in the low bits of idx)
// and |w| <= 1/2, returned exactly; scale a power of 2, |scale * v| < 2^21.
template <int kOffset>
GK_ALWAYS_INLINE Vec<float> split_piece(Vec<float> v, float scale, Mask<float>& idx) {
  const Vec<float> magic = set1(12582912.0f + kOffset);  // 1.5 * 2^23 (+ offset): rounds to an integer
  const Vec<float> nf = v * scale + magic;
  idx = bits(nf);
  return v * scale - (nf - magic);
}

// fast in the lanes where a < limit, tail() in the others (NaN included); tail()
// only runs for a vector with such a lane, so a lane's result depends on its own
// input only.
template <class Tail>
GK_ALWAYS_INLINE Vec<float> with_tail(Vec<float> a, float limit, Vec<float> fast, Tail tail) {
#if defined(__AVX512F__)
  const __mmask16 in = _mm512_cmp_ps_mask((__m512)a, _mm512_set1_ps(limit), _CMP_LT_OQ);
  if (__builtin_expect(in == 0xFFFF, 1)) return fast;
  return (Vec<float>)_mm512_mask_blend_ps(in, (__m512)tail(), (__m512)fast);
#else
  const __m256 in = _mm256_cmp_ps((__m256)a, _mm256_set1_ps(limit), _CMP_LT_OQ);
  if (__builtin_expect(_mm256_movemask_ps(in) == 0xFF, 1)) return fast;
  return (Vec<float>)_mm256_blendv_ps((__m256)tail(), (__m256)fast, in);
#endif
}
}  // namespace detail
#endif

#if defined(__AVX2__) || defined(__AVX512F__)
namespace detail {
// a Phi(-a) / (sqrt(2 pi) phi(a)) = a Phi(-a) exp(a^2 / 2) for a in [3.74, 14.6] from
// v = 1 / a^2 (the fit described at gelu_tail).
GK_ALWAYS_INLINE Vec<float> mills_a(Vec<float> v) {
  Vec<float> g = set1(-66.7730255f);
  g = g * v + 24.9381886f;
  g = g * v - 5.41806936f;
  g = g * v + 1.18652296f;
  g = g * v - 0.398854166f;
  return g * v + 0.398942024f;
}

// a Phi(-a) rounds to 0 from a = 14.36 on; at 14.375 exp's argument is -103.3 (> -104:
// exp_f32's one-multiplication scaling, ExpRange::nonpositive, holds).
constexpr float kGeluTailClamp = 14.375f;

// GELU for |x| >= 3.74 (and NaN, +-inf), the lanes the piecewise forms leave:
// T = a Phi(-a), a = min(|x|, 14.375), is phi(a) g(1 / a^2) with g(v) = a Phi(-a) /
// phi(a) (Mills' ratio times a, 1 - v + 3v^2 - ...) a degree-5 minimax fit on a in
// [3.74, 14.6] (relative error, 1/sqrt(2 pi) folded in; 1.5 * 2^-24 in float;
// cpp/tools/fit_gelu_pieces.py); a^2 exact as sq + sq_lo (FMA), so exp(-a^2 / 2)
// keeps its accuracy up to a ~ 14.4. y = -T for x < 0, x - T for x > 0 (T < 2.2e-4 x
// there). About 22 operations.
GK_ALWAYS_INLINE Vec<float> gelu_tail(Vec<float> x) {
  using V = Vec<float>;
  const V a = clamp_hi(abs(x), kGeluTailClamp);  // NaN kept
  const V sq = a * a;
#if defined(__AVX512F__)
  const V sq_lo = (V)_mm512_fmsub_ps((__m512)a, (__m512)a, (__m512)sq);
#else
  const V sq_lo = (V)_mm256_fmsub_ps((__m256)a, (__m256)a, (__m256)sq);
#endif
  const V t = exp_f32<true, true, ExpRange::nonpositive>(sq * -0.5f, sq_lo * -0.5f, mills_a(recip(sq)));
  return clamp_lo(x, 0.0f) - t;  // max(0, x), NaN kept
}
}  // namespace detail
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
namespace detail {
// GELU'(x) for |x| >= 3.75 (and NaN, +-inf), the lanes kGeluGrad8 leaves: h = Phi(-a) -
// a phi(a) = a exp(-a^2 / 2) (v mills_a(v) - 1/sqrt(2 pi)), v = 1 / a^2, a = min(|x|, 13)
// (|h| < 1e-36 beyond), GELU' = h for x < 0 and 1 - h for x >= 0. |h| <= 2.8e-3 here, so
// the bound's absolute error (2^-23 (|GELU'| + 1)) asks 4e-6 of h's relative error at most:
// x^2 in one rounding and exp's argument without a low part are enough. About 20
// operations, against about 60 for gelu_grad_general, which this path took before.
GK_ALWAYS_INLINE Vec<float> gelu_grad_tail(Vec<float> x) {
  using V = Vec<float>;
  const V a = clamp_hi(abs(x), 13.0f);  // NaN kept
  const V sq = a * a;
  const V v = recip(sq);
  const V m = a * (v * mills_a(v) - 0.398942280401432678f);
  const V h = exp_f32<false, true, ExpRange::nonpositive>(sq * -0.5f, sq, m);  // exponent >= -84.5
  return select_sign(x, h, 1.0f - h);
}
}  // namespace detail

// gelu() in two parts, for kernels that gather the tail lanes of many vectors into full
// vectors (eltwise's GELU forward): gelu_fast(x, |x|) is gelu(x) in the lanes where
// |x| < kGeluFastLimit (bit for bit), and detail::gelu_tail(x) in the others (NaN
// included; lane-wise, so any lanes may be packed together).
constexpr float kGeluFastLimit = 3.75f;
GK_ALWAYS_INLINE Vec<float> gelu_fast(Vec<float> x, Vec<float> a) {
  using V = Vec<float>;
  Mask<float> idx;
  const V w = detail::split_piece<0>(a, 2.0f, idx);  // piece j: 2a in [j - 1/2, j + 1/2]
  const V q = detail::piece_poly(detail::kPhiTail8, idx, w);
  return select_sign(x, x * q, (V)_mm256_fnmadd_ps((__m256)x, (__m256)q, (__m256)x));
}
#endif

// GELU(x) = x Phi(x), float.
// AVX-512: x detail::kPhiPiece(x) for |x| < 3.875 (about 19 operations).
// AVX2: q = detail::kPhiTail8(|x|) = Phi(-|x|) for |x| < 3.75, y = x q for x < 0 and
// x - x q (one FMA, one rounding) for x >= 0 (about 22 operations).
// Lanes beyond (and NaN, +-inf) take detail::gelu_tail, which only runs for vectors
// holding such a lane (detail::with_tail).
// Elsewhere: gelu_general.
GK_ALWAYS_INLINE Vec<float> gelu(Vec<float> x) {
#if defined(__AVX512F__)
  using V = Vec<float>;
  Mask<float> idx;
  const V w = detail::split_piece<16>(x, 4.0f, idx);  // piece j: 4x + 16 in [j - 1/2, j + 1/2]
  const V fast = x * detail::piece_poly(detail::kPhiPiece, idx, w);
  return detail::with_tail(abs(x), 3.875f, fast, [x] { return detail::gelu_tail(x); });
#elif defined(__AVX2__)
  const Vec<float> a = abs(x);
  return detail::with_tail(a, kGeluFastLimit, gelu_fast(x, a), [x] { return detail::gelu_tail(x); });
#else
  return gelu_general(x);
#endif
}

// GELU'(x) = Phi(x) + x phi(x), any x (x clamped inside, where phi underflows): Phi as
// the normal tail, 1 - tail for x >= 0.
template <class V>
GK_ALWAYS_INLINE V gelu_grad_general(V x) {
  using T = elem_t<V>;
  const V xc = clamp(x, -kNormalClamp<T>, kNormalClamp<T>);
  const V h = normal_tail(xc, set1(T(1)));
  return (x >= T(0) ? T(1) - h : h) + normal_pdf(xc, xc);
}

// GELU'(x), float. AVX-512: detail::kGeluGradPiece for |x| < 3.875. AVX2: h =
// detail::kGeluGrad8(|x|) = Phi(-|x|) - |x| phi(x) for |x| < 3.75, GELU' = h for x < 0,
// 1 - h for x >= 0. Other lanes from gelu_grad_general on AVX-512 and from
// detail::gelu_grad_tail on AVX2 (detail::with_tail).
GK_ALWAYS_INLINE Vec<float> gelu_grad(Vec<float> x) {
#if defined(__AVX512F__)
  using V = Vec<float>;
  Mask<float> idx;
  const V w = detail::split_piece<16>(x, 4.0f, idx);
  const V fast = detail::piece_poly(detail::kGeluGradPiece, idx, w);
  return detail::with_tail(abs(x), 3.875f, fast, [x] { return gelu_grad_general(x); });
#elif defined(__AVX2__)
  using V = Vec<float>;
  const V a = abs(x);
  Mask<float> idx;
  const V w = detail::split_piece<0>(a, 2.0f, idx);
  const V h = detail::piece_poly(detail::kGeluGrad8, idx, w);
  return detail::with_tail(a, 3.75f, select_sign(x, h, 1.0f - h), [x] { return detail::gelu_grad_tail(x); });
#else
  return gelu_grad_general(x);
#endif
}

GK_ALWAYS_INLINE Vec<double> gelu_grad(Vec<double> x) {
  return gelu_grad_general(x);
}

GK_ALWAYS_INLINE Vec<double> gelu(Vec<double> x) {
  return gelu_general(x);
}

}  // namespace gk::GK_ISA_NS::simd
