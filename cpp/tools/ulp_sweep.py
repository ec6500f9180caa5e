#!/usr/bin/env python3
"""Maximum error of the float32 activations over every float32 in a range (or every
k-th), per ISA, against float64 references: the numbers quoted in the header comment
of cpp/include/gradkit/simd_math.h.

    PYTHONPATH=python python cpp/tools/ulp_sweep.py sigmoid tanh gelu gelu_grad [--isa avx2] [--step 5]

Forward errors are in units in the last place of the reference rounded to float32
(denormal results: units of the smallest denormal), as tests/test_activation.py.
gelu_grad (from gelu_backward with dy = 1) is reported as max |err| / (2^-23 (|ref| + 1)),
the form of the GELU' bound. Ranges: tanh [-9.5, 9.5], sigmoid [-110, 110], gelu and
gelu_grad [-16, 16]. Needs SciPy (erfc). Single-threaded, about a minute per function
and ISA for a full sweep.
"""
import argparse
import math

import numpy as np
from scipy.special import erfc

import gradkit as gk
from gradkit import _core, ops

RANGES = {"tanh": 9.5, "sigmoid": 110.0, "gelu": 16.0, "gelu_grad": 16.0}


def reference(name, x):
    x = x.astype(np.float64)
    if name == "sigmoid":
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return np.tanh(x)
    cdf = 0.5 * erfc(-x / math.sqrt(2))
    if name == "gelu":
        return x * cdf
    return cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def compute(name, x):
    if name == "gelu_grad":
        return ops.gelu_backward(np.ones_like(x), x)
    return getattr(ops, name)(x)


def sweep(name, step, chunk=1 << 24):
    """(max error, x where it occurs) over every step-th float32 in [-R, R]."""
    top = int(np.float32(RANGES[name]).view(np.int32))
    worst, at = 0.0, 0.0
    for sign in (0, np.int32(-2**31)):
        for b0 in range(0, top + 1, chunk * step):
            bits = np.arange(b0, min(top + 1, b0 + chunk * step), step, dtype=np.int32) | sign
            x = bits.view(np.float32)
            got = compute(name, x).astype(np.float64)
            ref = reference(name, x)
            if name == "gelu_grad":
                err = np.abs(got - ref) / (2.0**-23 * (np.abs(ref) + 1))
            else:
                ulp = np.maximum(np.abs(np.spacing(ref.astype(np.float32))).astype(np.float64), 2.0**-149)
                err = np.abs(got - ref) / ulp
            i = int(np.argmax(err))
            if err[i] > worst:
                worst, at = float(err[i]), float(x[i])
    return worst, at


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="+", choices=sorted(RANGES))
    p.add_argument("--isa", action="append", help="default: every supported ISA")
    p.add_argument("--step", type=int, default=1, help="every k-th float32 (default 1: all)")
    a = p.parse_args()
    gk.set_num_threads(1)
    for isa in a.isa or _core.supported_isas():
        _core.set_isa(isa)
        for name in a.names:
            worst, at = sweep(name, a.step)
            print(f"{isa:8s} {name:10s} step {a.step}: max {worst:.2f} at x = {at!r}", flush=True)


if __name__ == "__main__":
    main()
