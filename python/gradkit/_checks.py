"""Argument checks shared by the whole package: one wording, one set of rules.

Every check names who is asking and which argument, says what was expected and what came:
``"Conv2d: stride: expected an int or a pair of ints, got 1.5"``. ``bool`` is never taken for
an int or a real number (``True`` is not a stride), NumPy integer and floating scalars are.
Each returns the value converted (``int``, ``float``, ``bool``, a tuple) so callers store what
was checked. Check an argument once, where it enters the library; the C++ kernels below trust
what the Python layer passed.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

__all__ = ["integer", "real", "boolean", "pair", "instance"]

_INT64_MAX = 2**63


def _type_error(who: str, name: str, expected: str, value) -> TypeError:
    return TypeError(f"{who}: {name}: expected {expected}, got {type(value).__name__}")


def _bounds_text(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def integer(who: str, name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high] (either bound optional).

    TypeError for anything that is not an integer (``bool`` and ``np.bool_`` included),
    ValueError outside the bounds, or beyond int64 unless both bounds are given (a seed takes uint64)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {name}: expected an int, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise _type_error(who, name, "an int", value) from None
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{who}: {name}: expected an integer {_bounds_text(low, high)}, got {v}")
    if not -_INT64_MAX <= v < _INT64_MAX and (low is None or high is None):
        raise ValueError(f"{who}: {name}: expected a value below 2**63 in magnitude, got {v}")
    return v


def real(who: str, name: str, value, low: float | None = None, high: float | None = None, *,
         low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """``value`` as a float within [low, high] (an open end with ``low_open`` / ``high_open``).

    TypeError for a non-number or a bool; ValueError for NaN, for +-inf unless ``finite=False``,
    and outside the bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise _type_error(who, name, "a real number", value)
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{who}: {name}: expected a finite number, got {value!r}")
    if ((low is not None and (v < low or (low_open and v == low)))
            or (high is not None and (v > high or (high_open and v == high)))):
        raise ValueError(f"{who}: {name}: expected a value {_bounds_text(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    return v


def boolean(who: str, name: str, value) -> bool:
    """``value`` if it is a bool (``np.bool_`` becomes ``bool``); TypeError for 0, 1 or anything else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise _type_error(who, name, "a bool", value)


def pair(who: str, name: str, value, low: int | None = None, high: int | None = None) -> tuple:
    """An int or a pair (tuple or list) of ints, each in [low, high], as a 2-tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{who}: {name}: expected an int or a pair of ints, "
                             f"got {len(value)} values {tuple(value)!r}")
        items = tuple(value)
    else:
        items = (value, value)
    if any(isinstance(v, (bool, np.bool_)) for v in items):
        raise TypeError(f"{who}: {name}: expected an int or a pair of ints, got {value!r}")
    try:
        items = tuple(operator.index(v) for v in items)
    except TypeError:
        raise TypeError(f"{who}: {name}: expected an int or a pair of ints, got {value!r}") from None
    return tuple(integer(who, name, v, low, high) for v in items)


def instance(who: str, name: str, value, cls, expected: str):
    """``value`` if ``isinstance(value, cls)``; TypeError saying ``expected`` otherwise."""
    if not isinstance(value, cls):
        raise _type_error(who, name, expected, value)
    return value
