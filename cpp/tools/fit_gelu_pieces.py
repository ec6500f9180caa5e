#!/usr/bin/env python3
"""Fits the 8-piece tables of the AVX2 GELU and GELU' (kPhiTail8 and kGeluGrad8 in
cpp/include/gradkit/simd_math.h) and prints them as C++ initializers.

a = |x| in [0, 3.75) is split into 8 pieces of width 1/2: piece j is 2a in
[j - 1/2, j + 1/2] (piece 0: [0, 1/2]), variable w = 2a - j. On each piece:

  q(a) = Phi(-a)                 degree 7, minimax in relative error
                                 (GELU: x q for x < 0, x - x q for x >= 0)
  h(a) = Phi(-a) - a phi(a)      degree 6, minimax in absolute error
                                 (GELU': h for x < 0, 1 - h for x >= 0)

Fits: Lawson's iteratively reweighted least squares on 4000 Chebyshev points
(float64), then the coefficients rounded to float32 one at a time from w^0 up,
the higher ones refitted after each rounding. The script then evaluates the
float32 tables as the kernel does (Horner with FMAs, emulated in float64 with one
rounding to float32 per step) and prints the worst errors: q in units of 2^-24
relative (x q and x - x q add one rounding), h in units of 2^-23 (|GELU'| + 1).

    python cpp/tools/fit_gelu_pieces.py
"""
import math

import numpy as np
from scipy.special import ndtr

PIECES, WIDTH = 8, 0.5


def q_fn(a):
    return ndtr(-a)


def h_fn(a):
    return ndtr(-a) - a * np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


def nodes(j, n=4000):
    lo = 0.0 if j == 0 else -0.5  # a >= 0: piece 0 is only used for w >= 0
    t = (np.cos(np.linspace(0, np.pi, n)) + 1) / 2
    return lo + (0.5 - lo) * t


def lawson(V, y, wt, iters=80):
    """Coefficients c minimising max |V c - y| * wt (approximately)."""
    lw = np.ones(len(y))
    c = None
    for _ in range(iters):
        s = np.sqrt(lw) * wt
        c = np.linalg.lstsq(V * s[:, None], y * s, rcond=None)[0]
        e = np.abs(V @ c - y) * wt
        lw = lw * (e + 1e-300)
        lw /= lw.sum()
    return c


def fit_piece(f, j, deg, relative):
    w = nodes(j)
    y = f((j + w) * WIDTH)
    wt = 1 / np.abs(y) if relative else np.ones_like(y)
    V = np.vander(w, deg + 1, increasing=True)
    fixed = []
    for k in range(deg + 1):
        rest = V[:, k:]
        c = lawson(rest, y - V[:, :k] @ np.array(fixed, dtype=np.float64), wt)
        fixed.append(float(np.float32(c[0])))  # round c_k, refit the higher ones
    return np.array(fixed, dtype=np.float32)


def horner_f32(c, w):
    """sum c_k w^k in float32 with one rounding per FMA, as the kernel."""
    w = w.astype(np.float32).astype(np.float64)
    p = np.full_like(w, float(c[-1]))
    for ck in c[-2::-1]:
        p = (p * w + float(ck)).astype(np.float32).astype(np.float64)
    return p


def table(f, deg, relative, unit):
    tab = np.zeros((deg + 1, PIECES), dtype=np.float32)
    worst = 0.0
    for j in range(PIECES):
        c = fit_piece(f, j, deg, relative)
        tab[:, j] = c
        # check on every float32 a of the piece
        a_lo = max(0.0, (j - 0.5) * WIDTH)
        a_hi = min((j + 0.5) * WIDTH, 3.75)
        a = np.arange(np.float32(a_lo).view(np.int32), np.float32(a_hi).view(np.int32), 97,
                      dtype=np.int32).view(np.float32)
        w = (2 * a.astype(np.float64) - j).astype(np.float32)  # exact, as the kernel's FMA
        got = horner_f32(c, w)
        ref = f(a.astype(np.float64))
        err = np.abs(got - ref) / (np.abs(ref) * unit if relative else unit * (np.abs(ref) + 1))
        worst = max(worst, float(err.max()))
    return tab, worst


def fit_mills(lo=3.74, hi=14.6, deg=5):
    """g(v), v = 1 / a^2, with a Phi(-a) = exp(-a^2 / 2) g(1 / a^2) on a in [lo, hi]:
    degree deg in v, minimax in relative error, float coefficients from v^0 up."""
    a = lo + (hi - lo) * (np.cos(np.linspace(0, np.pi, 4000)) + 1) / 2
    v = 1 / (a * a)
    y = a * ndtr(-a) * np.exp(0.5 * a * a)
    V = np.vander(v, deg + 1, increasing=True)
    fixed = []
    for k in range(deg + 1):
        c = lawson(V[:, k:], y - V[:, :k] @ np.array(fixed, dtype=np.float64), 1 / y)
        fixed.append(float(np.float32(c[0])))
    g = horner_f32(np.array(fixed, np.float32), v.astype(np.float32))
    return np.array(fixed, np.float32), float(np.abs(g / y - 1).max() / 2.0**-24)


def emit(name, tab, comment):
    print(f"// {comment}")
    print(f"alignas(32) inline constexpr float {name}[{tab.shape[0]}][{tab.shape[1]}] = {{")
    for k, row in enumerate(tab):
        vals = ", ".join(f"{float(v):.9g}f" for v in row)
        print(f"    {{{vals}}},  // w^{k}")
    print("};")


def main():
    tq, eq = table(q_fn, 7, True, 2.0**-24)
    th, eh = table(h_fn, 6, False, 2.0**-23)
    emit("kPhiTail8", tq, f"Phi(-a), degree 7: within {eq:.2f} * 2^-24 relative in float")
    emit("kGeluGrad8", th, f"Phi(-a) - a phi(a), degree 6: within {eh:.2f} * 2^-23 (|h| + 1) in float")
    g, eg = fit_mills()
    print(f"// gelu_tail's g(v), v^5 first: within {eg:.2f} * 2^-24 relative in float")
    print("\n".join(f"  g = g * v + {float(c):.9g}f;" for c in g[::-1]))


if __name__ == "__main__":
    main()
