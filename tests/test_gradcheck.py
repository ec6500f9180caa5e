"""gk.gradcheck: passes correct gradients, names the tensor/index/error of wrong ones, leaves the original alone."""
import re

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, _random
from gradkit.nn import Linear, Module, Sequential
from nn_helpers import Scale


class WrongWeightGrad(Scale):
    """Scale whose weight gradient is wrong in one element."""

    def backward(self, dy):
        dx = super().backward(dy)
        x = self._saved()["x"]
        self.weight.grad[1] += 0.5 * (dy[:, 1] * x[:, 1]).sum() + 0.1
        return dx


class WrongInputGrad(Scale):
    def backward(self, dy):
        dx = super().backward(dy)
        dx[2, 0] *= 1.5
        dx[2, 0] += 0.1
        return dx


class SquaredError(Module):
    """A loss: forward(input, target) -> float, backward() -> d input (no argument)."""

    def forward(self, x, target):
        self._save_for_backward(diff=x - target)
        return float(np.sum((x - target) ** 2) / x.size)

    def backward(self):
        diff = self._saved()["diff"]
        return 2 * diff / diff.size


class Pick(Module):
    """Cross entropy with integer labels: the integer input is passed through, not differentiated."""

    def forward(self, logits, labels):
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        self._save_for_backward(p=p, labels=labels)
        return float(-np.log(p[np.arange(len(labels)), labels]).mean())

    def backward(self):
        s = self._saved()
        d = s["p"].copy()
        d[np.arange(len(s["labels"])), s["labels"]] -= 1
        return d / len(s["labels"])


class RandomMask(Module):
    """Dropout-like: a fresh mask from the library generator at every training forward."""

    def forward(self, x):
        mask = (_random.uniform(x.shape, dtype=x.dtype) > 0.5).astype(x.dtype) * 2 if self.training else 1
        self._save_for_backward(mask=mask)
        return x * mask

    def backward(self, dy):
        return dy * self._saved()["mask"]


def test_passes_for_correct_modules(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert gk.gradcheck(Scale(3), x) is True
    assert gk.gradcheck(Sequential(Linear(3, 5), Scale(5), Linear(5, 2)), x) is True


def test_wrong_parameter_gradient_is_named(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(AssertionError) as info:
        gk.gradcheck(WrongWeightGrad(3), x.astype(np.float32))
    msg = str(info.value)
    assert "parameter weight" in msg and "index (1,)" in msg and "relative error" in msg
    assert re.search(r"1 of 3 elements differ", msg)
    with pytest.raises(AssertionError, match=r"parameter 1\.weight .*index \(1,\)"):
        gk.gradcheck(Sequential(Linear(3, 3), WrongWeightGrad(3)), x.astype(np.float32))


def test_wrong_input_gradient_is_named(rng):
    with pytest.raises(AssertionError, match=r"input 0 \(shape \(4, 3\)\): 1 of 12 elements differ; worst at index \(2, 0\)"):
        gk.gradcheck(WrongInputGrad(3), rng.standard_normal((4, 3)).astype(np.float32))


def test_original_module_untouched(rng):
    m = Scale(3)
    m.weight.grad[...] = 7.0
    before = m.state_dict()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert gk.gradcheck(m, x)  # many training-mode forwards update the copy's running_mean
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
        assert v.dtype == before[k].dtype
    np.testing.assert_array_equal(m.weight.grad, np.full(3, 7.0, dtype=np.float32))
    assert m._cache is None and m.training


def test_loss_module_with_float_and_integer_targets(rng):
    x = rng.standard_normal((5, 4))
    assert gk.gradcheck(SquaredError(), x, rng.standard_normal((5, 4)))
    labels = rng.integers(0, 4, size=5)
    assert gk.gradcheck(Pick(), x.astype(np.float32), labels)


def test_random_layers_see_one_mask_and_the_generator_is_restored(rng):
    x = rng.standard_normal((6, 5))
    gk.manual_seed(9)
    model = Sequential(Linear(5, 5), RandomMask(), Linear(5, 2))
    state = _core.rng_state()
    assert gk.gradcheck(model, x)
    assert _core.rng_state() == state
    assert gk.gradcheck(RandomMask().eval(), x)


def test_function_pairs(rng):
    x, w = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    assert gk.gradcheck((np.tanh, lambda dy, x: dy * (1 - np.tanh(x) ** 2)), x)
    assert gk.gradcheck((lambda a, b: a @ b, lambda dy, a, b: (dy @ b.T, a.T @ dy)), x, w)
    with pytest.raises(AssertionError, match=r"input 1 \(shape \(4, 2\)\)"):
        gk.gradcheck((lambda a, b: a @ b, lambda dy, a, b: (dy @ b.T, a.T @ dy * 1.01)), x, w)
    with pytest.raises(AssertionError, match="input 0"):
        gk.gradcheck((np.sin, lambda dy, x: dy * np.sin(x)), x)


def test_tolerances_matter(rng):
    class Off(Scale):  # the weight gradient is 1e-4 (relative) too large
        def backward(self, dy):
            dx = super().backward(dy)
            self.weight.grad *= 1 + 1e-4
            return dx

    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert gk.gradcheck(Off(3), x)  # within rtol=1e-3
    with pytest.raises(AssertionError, match="parameter weight"):
        gk.gradcheck(Off(3), x, atol=0.0, rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(TypeError, match="module_or_fn: expected a gk.nn.Module"):
        gk.gradcheck(3, np.ones(2))
    with pytest.raises(ValueError, match="gradcheck: eps: expected a value > 0, got 0"):
        gk.gradcheck(Scale(2), np.ones((1, 2)), eps=0)
    with pytest.raises(ValueError, match="gradcheck: rtol: expected a value >= 0, got -1"):
        gk.gradcheck(Scale(2), np.ones((1, 2)), rtol=-1)
    with pytest.raises(TypeError, match=r"inputs\[0\]: expected a float or integer array, got dtype <U1"):
        gk.gradcheck(Scale(2), np.array(["a"]))

    class Float32Out(Module):
        def forward(self, x):
            return x.astype(np.float32)

        def backward(self, dy):
            return dy

    with pytest.raises(TypeError, match="float64 forward returned dtype float32"):
        gk.gradcheck(Float32Out(), np.ones(3))


def test_the_original_keeps_its_cache(rng):
    m = Scale(3)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    m(x)
    cache = m._cache
    assert gk.gradcheck(m, rng.standard_normal((4, 3)).astype(np.float32))
    assert m._cache is cache
    np.testing.assert_array_equal(m.backward(np.ones((2, 3), dtype=np.float32)), np.ones((2, 3)) * m.weight.data)
