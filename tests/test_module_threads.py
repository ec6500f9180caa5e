"""A module used from two threads at once: the second forward or backward entering a module
that is mid-call on another thread raises RuntimeError (the cache holds one call)."""
import copy
import pickle
import threading

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import functional as F


class Gate(gk.nn.Module):
    """Identity that, when armed, waits inside forward/backward until released."""

    def __init__(self):
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()
        self.armed = False

    def __getstate__(self):  # events cannot be copied: copies get fresh ones
        return {k: v for k, v in self.__dict__.items() if k not in ("inside", "release")}

    def __setstate__(self, state):
        self.__dict__.update(state, inside=threading.Event(), release=threading.Event())

    def _wait(self):
        if self.armed:
            self.inside.set()
            assert self.release.wait(30), "never released"

    def forward(self, x):
        self._wait()
        self._save_for_backward(shape=x.shape)
        return x

    def backward(self, dy):
        self._wait()
        self._saved()
        return dy


def run_in_thread(fn):
    """Start fn on a thread; returns (thread, result dict with "value" or "error")."""
    result = {}

    def body():
        try:
            result["value"] = fn()
        except BaseException as e:  # reported to the test
            result["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, result


@pytest.mark.parametrize("stage", ["forward", "backward"])
def test_second_thread_entering_a_busy_module_raises(stage, rng):
    gk.manual_seed(0)
    gate = Gate()
    model = gk.nn.Sequential(gk.nn.Linear(5, 4), gk.nn.ReLU(), gate, gk.nn.Linear(4, 3))
    x = rng.standard_normal((7, 5)).astype(np.float32)
    dy = np.ones((7, 3), np.float32)
    model(x)
    gate.armed = True
    first = (lambda: model(x)) if stage == "forward" else (lambda: model.backward(dy))
    t, result = run_in_thread(first)
    assert gate.inside.wait(30), "the first call never reached the gate"
    # the first thread is now inside model (and inside gate): every entry from here is refused
    for call, where in [(lambda: model(x), "Sequential.forward"), (lambda: model.backward(dy), "Sequential.backward"),
                        (lambda: gate(x), "Gate.forward"), (lambda: gate.backward(x), "Gate.backward")]:
        with pytest.raises(RuntimeError, match=where + ": the module is running forward or backward on another thread"):
            call()
    # a layer that is not mid-call stays usable from this thread
    assert model[0](x).shape == (7, 4)
    gate.release.set()
    t.join(30)
    assert not t.is_alive() and "error" not in result, result.get("error")
    # once the first call is done, the module is free for any thread again
    gate.armed = False
    t, result = run_in_thread(lambda: model(x))
    t.join(30)
    assert "error" not in result and result["value"].shape == (7, 3)
    assert model.backward(dy).shape == (7, 5)


def test_same_thread_reentry_and_results_unchanged(rng):
    """Nested and repeated use of one module on one thread (weight tying, Residual, super())."""
    gk.manual_seed(1)
    shared = gk.nn.Linear(6, 6)
    model = gk.nn.Sequential(shared, gk.nn.Tanh(), gk.nn.Residual(shared))
    x = rng.standard_normal((3, 6))
    model.double()
    y = model(x)
    w, b = shared.weight.data, shared.bias.data
    h = np.tanh(x @ w.T + b)
    np.testing.assert_allclose(y, h + h @ w.T + b, rtol=1e-12)

    class Base(gk.nn.Module):
        def forward(self, x):
            return F.add(x, x)

    class Derived(Base):
        def forward(self, x):
            return F.relu(super().forward(x))

    m = Derived()
    y = m(np.array([-1.0, 2.0]))  # super().forward's op is recorded on m's own tape
    np.testing.assert_array_equal(y, [0.0, 4.0])
    np.testing.assert_array_equal(m.backward(np.ones(2)), [0.0, 2.0])

    class PlainBase(gk.nn.Module):
        def forward(self, x):
            return x + 1

    class PlainDerived(PlainBase):
        def forward(self, x):
            return super().forward(x) * 2

    with gk.no_grad():  # plain NumPy in a forward-only module: allowed when nothing is recorded
        assert PlainDerived()(np.zeros(2))[0] == 2.0


def test_copies_and_pickles_get_a_free_guard():
    gate = Gate()
    model = gk.nn.Sequential(gk.nn.Linear(2, 2), gate)
    gate.armed = True
    t, _ = run_in_thread(lambda: model(np.zeros((1, 2), np.float32)))
    assert gate.inside.wait(30)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # copies are not mid-call
        twin[1].armed = False
        assert twin(np.ones((1, 2), np.float32)).shape == (1, 2)
    with pytest.raises(RuntimeError, match="another thread"):
        model(np.ones((1, 2), np.float32))
    gate.release.set()
    t.join(30)
    assert not t.is_alive()
