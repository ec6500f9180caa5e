"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py): strategies for arrays with edge
sizes, dtypes and layouts, a counter of checked cases, and the run settings (fixed seed:
derandomized).

A fuzz test is ``@fuzz(n) @given(...) @checked def test_...``: its body calls ``count()`` once,
after its checks (a result compared with its reference, or an error checked to name its argument);
an invalid draw is filtered with ``hypothesis.assume`` (hypothesis then draws another, and only
valid draws count towards ``n``), never returned from. ``checked`` fails a case that returns
without calling ``count()``, so the count is of cases that reached the library and checked
something, not of entries into the body (a draw hypothesis abandons midway, e.g. a ``data.draw``
past its buffer, is not counted either)."""
import functools
import os
import re

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Sizes around the SIMD widths (4/8/16 lanes) plus 0 and 1.
SIZES = [0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33]
SMALL = [1, 2, 3, 4, 5]
FLOATS = [np.float32, np.float64]
WRONG_DTYPES = [np.float16, np.int32, np.int64, np.complex64, np.bool_, ">f4"]
SCALE = float(os.environ.get("GK_FUZZ_SCALE", "1"))  # .ci/sanitize.sh runs a fraction

CASES = {"count": 0}


def count():
    """The running case reached the library and its checks passed: call once, after them."""
    CASES["count"] += 1


def checked(test):
    """Decorates a fuzz test's body (below ``@given``): a case that returns without having called
    ``count()`` exactly once fails (an unchecked early return); an exception (a failed check,
    a rejected ``assume``) propagates as it is."""
    @functools.wraps(test)
    def body(*args, **kwargs):
        before = CASES["count"]
        test(*args, **kwargs)
        calls = CASES["count"] - before
        assert calls == 1, (f"{test.__name__}: the case returned after {calls} count() calls (one, after its "
                            "checks; filter invalid draws with hypothesis.assume)")
    return body


def fuzz(examples):
    """Hypothesis settings: a fixed number of cases, a seed fixed per run, no deadline."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def planned(examples):
    return max(1, int(examples * SCALE))


def check_ran(name, before, plan):
    """Checked cases (``count()`` calls) of test ``name`` since the count was ``before``; fails
    below its planned number in ``plan`` (a dict test name -> examples; tests not in it are not
    checked)."""
    ran = CASES["count"] - before
    if name in plan:
        assert ran >= planned(plan[name]), f"{name}: {ran} cases checked, {planned(plan[name])} planned"
    return ran


@st.composite
def layouts(draw, array):
    """The same values as `array` in another layout: contiguous, a strided view, a transposed
    copy seen through .T.T, or a misaligned copy; the values never change."""
    kind = draw(st.sampled_from(["plain", "strided", "fortran", "misaligned"]))
    if kind == "strided" and array.ndim:
        big = np.zeros(array.shape[:-1] + (array.shape[-1] * 2,), array.dtype)
        big[..., ::2] = array
        return big[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "misaligned" and array.dtype.itemsize > 1:
        raw = np.zeros(array.nbytes + 1, np.uint8)[1:]
        view = raw.view(array.dtype).reshape(array.shape) if array.size else array.copy()
        view[...] = array
        return view
    return array.copy()


@st.composite
def arrays(draw, shape, dtype, special=False, scale=3.0):
    """Random normal values (seeded from hypothesis) in a random layout; with `special`, some
    entries become NaN, +inf or -inf."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * scale).astype(dtype)
    if special and a.size and draw(st.booleans()):
        idx = rng.integers(0, a.size, size=max(1, a.size // 5))
        a.flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype), size=idx.size)
    return draw(layouts(a))


def check_close(got, ref, dtype, rtol=None, atol=None, what="result"):
    """got equals the float64 reference within the dtype's tolerance; NaN exactly where the reference has NaN.
    ``atol`` may be an array of the reference's shape (a bound per entry)."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs reference {ref.shape}"
    if rtol is None:
        rtol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-11
    if atol is None:
        atol = rtol
    g = got.astype(np.float64)
    nan_ref, nan_got = np.isnan(ref), np.isnan(g)
    assert np.array_equal(nan_ref, nan_got), f"{what}: NaN at {np.argwhere(nan_ref != nan_got)[:3].tolist()}"
    ok = ~nan_ref
    inf = ok & np.isinf(ref)
    assert np.array_equal(g[inf], ref[inf]), f"{what}: infinities differ"
    fin = ok & ~inf
    err = np.abs(g[fin] - ref[fin])
    bound = np.broadcast_to(atol, ref.shape)[fin] + rtol * np.abs(ref[fin])
    assert np.all(err <= bound), (f"{what}: max error {err.max():.3g}, {np.max(err / bound):.3g}x the tolerance "
                                  f"({np.max(atol):.1g} + {rtol:.1g}|ref|)")


def check_error(exc, names):
    """A TypeError/ValueError whose message names one of the op's arguments."""
    assert isinstance(exc, (TypeError, ValueError)), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert any(re.search(rf"\b{re.escape(n)}\b", msg) for n in names), f"no argument named in: {msg}"
