"""Shared fixtures: run kernel tests on every ISA the machine has and on 1 and 2 threads."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import _core

ISAS = _core.supported_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Switch every dispatch table to one ISA for the test, then restore it."""
    previous = _core.get_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(previous)


@pytest.fixture(params=[1, 2])
def threads(request):
    previous = gk.get_num_threads()
    gk.set_num_threads(request.param)
    yield request.param
    gk.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """No test leaks a thread count, an ISA or a gradient mode into the next one."""
    threads, isa = gk.get_num_threads(), _core.get_isa()
    yield
    gk.set_num_threads(threads)
    _core.set_isa(isa)


def pytest_terminal_summary(terminalreporter):
    """Print how many checked cases the fuzz tests (tests/test_fuzz_*.py) ran."""
    from fuzz_helpers import CASES
    if CASES["count"]:
        terminalreporter.write_line(f"fuzz: {CASES['count']} checked cases "
                                    f"({CASES.get('layer_gradients', 0)} layer gradient checks)")
