"""The Module base and Parameter: registration, traversal, state, dtype, modes, caching, errors."""
import copy

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Module, Parameter
from nn_helpers import Scale, assert_close


# -- Parameter -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameter_keeps_float_dtype_and_zero_grad(dtype):
    src = np.arange(6, dtype=dtype).reshape(2, 3)
    p = Parameter(src)
    assert p.data.dtype == dtype and p.grad.dtype == dtype
    assert p.shape == (2, 3) and p.ndim == 2 and p.size == 6 and p.dtype == dtype
    np.testing.assert_array_equal(p.grad, np.zeros((2, 3)))
    src[0, 0] = 100  # the parameter owns a copy
    assert p.data[0, 0] == 0
    assert np.asarray(p) is p.data
    assert "shape=(2, 3)" in repr(p)


def test_parameter_converts_ints_and_rejects_others():
    assert Parameter([1, 2, 3]).dtype == np.float32
    assert Parameter(np.float16([1.5])).dtype == np.float32
    assert Parameter(Parameter(np.ones(2))).dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64.*got dtype <U1"):
        Parameter(np.array(["a"]))
    with pytest.raises(TypeError, match="got dtype complex128"):
        Parameter(np.ones(2, dtype=np.complex128))


def test_parameter_contiguous_copy_of_a_strided_view():
    base = np.arange(20, dtype=np.float32).reshape(4, 5)
    p = Parameter(base[:, ::2])
    assert p.data.flags.c_contiguous
    np.testing.assert_array_equal(p.data, base[:, ::2])


# -- registration and traversal ------------------------------------------------------
class Pair(Module):
    def __init__(self):
        super().__init__()
        self.a = Scale(2)
        self.b = Scale(2)


def test_registration_and_dotted_names():
    m = Pair()
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert [n for n, _ in m.named_buffers()] == ["a.running_mean", "a.calls", "b.running_mean", "b.calls"]
    assert [n for n, _ in m.named_modules()] == ["", "a", "b"]
    assert m.children() == [m.a, m.b]
    assert len(m.parameters()) == 4 and all(isinstance(p, Parameter) for p in m.parameters())
    assert list(m.state_dict()) == ["a.weight", "a.bias", "a.running_mean", "a.calls",
                                    "b.weight", "b.bias", "b.running_mean", "b.calls"]


def test_shared_parameter_listed_once():
    m = Pair()
    m.b.weight = m.a.weight
    assert len(m.parameters()) == 3
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias", "b.bias"]


def test_reassignment_moves_between_registries():
    m = Scale(2)
    m.weight = None  # keeps the slot as PyTorch does
    assert "weight" not in [n for n, _ in m.named_parameters()] and m.weight is None
    m.weight = Parameter(np.ones(2))
    assert m.weight.dtype == np.float64
    with pytest.raises(TypeError, match="weight: expected a Parameter or None, got ndarray"):
        m.weight = np.ones(2)
    m.running_mean = np.full(2, 7.0, dtype=np.float32)  # a buffer stays a buffer
    np.testing.assert_array_equal(m.state_dict()["running_mean"], [7, 7])
    m.other = 3  # plain attribute
    assert m.other == 3 and "other" not in m.state_dict()
    del m.bias
    assert "bias" not in dict(m.named_parameters())
    with pytest.raises(AttributeError, match="'Scale' object has no attribute 'nothing'"):
        _ = m.nothing


def test_register_parameter_and_add_module_validate():
    m = Module()
    m.register_parameter("bias", None)
    assert m.bias is None and m.parameters() == []
    with pytest.raises(TypeError, match="expected a gk.nn.Parameter or None, got ndarray"):
        m.register_parameter("w", np.ones(2))
    with pytest.raises(TypeError, match="expected a gk.nn.Module, got int"):
        m.add_module("x", 3)


def test_subclass_must_call_init():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(np.ones(1))

    with pytest.raises(AttributeError, match="call Module.__init__"):
        Bad()


def test_base_forward_backward_not_defined():
    with pytest.raises(TypeError, match="does not define forward"):
        Module()(np.ones(1))
    with pytest.raises(TypeError, match="does not define backward"):
        Module().backward(np.ones(1))


# -- modes, gradients, caching ---------------------------------------------------------
def test_train_eval_propagate_and_return_self():
    m = Pair()
    assert m.training and m.a.training
    assert m.eval() is m
    assert not m.training and not m.a.training and not m.b.training
    assert m.train() is m and m.b.training
    m.train(False)
    assert not m.a.training


def test_zero_grad_and_accumulation(rng):
    m = Scale(3)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    m(x)
    m.backward(dy)
    g1 = m.weight.grad.copy()
    m(x)
    m.backward(dy)
    assert_close(m.weight.grad, 2 * g1, np.float32, "accumulated grad")
    m.zero_grad()
    assert not m.weight.grad.any() and not m.bias.grad.any()


def test_backward_without_forward_and_after_no_grad():
    m = Scale(2)
    with pytest.raises(RuntimeError, match="Scale.backward: no cached forward pass"):
        m.backward(np.ones((1, 2), dtype=np.float32))
    x = np.ones((1, 2), dtype=np.float32)
    with gk.no_grad():
        y = m(x)
    assert m._cache is None
    with pytest.raises(RuntimeError, match="no_grad"):
        m.backward(np.ones_like(y))


def test_input_and_grad_checks():
    m = Scale(2)
    with pytest.raises(TypeError, match=r"Scale: input: expected dtype float32 \(the parameters' dtype\), got float64"):
        m(np.ones((1, 2)))
    with pytest.raises(TypeError, match="expected a numpy.ndarray, got list"):
        m([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"expected a 2-D array, got 1-D of shape \(2,\)"):
        m(np.ones(2, dtype=np.float32))
    m(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(3, 2\) \(the output's\), got \(2, 3\)"):
        m.backward(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="dy: expected dtype float32, got float64"):
        m.backward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="dy: expected a numpy.ndarray, got float"):
        m.backward(1.0)


def test_input_check_without_parameters():
    m = Module()
    assert m._check_input(np.ones(2, dtype=np.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="expected dtype float32 or float64, got int64"):
        m._check_input(np.ones(2, dtype=np.int64))
    with pytest.raises(ValueError, match="expected a 2-D or 4-D array, got 3-D"):
        m._check_input(np.ones((1, 1, 1)), ndim=(2, 4))


# -- state_dict / load_state_dict --------------------------------------------------------
def test_state_dict_is_a_copy_and_round_trips(rng):
    src, dst = Pair(), Pair()
    for p in src.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    src.a.running_mean[...] = [1.5, -2.5]
    src.a.calls[...] = 7
    sd = src.state_dict()
    sd["a.weight"][0] = 123.0  # a copy: the module is not changed
    assert src.a.weight.data[0] != 123.0
    sd = src.state_dict()
    dst.load_state_dict(sd)
    for (k, v), (k2, v2) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v, v2)
        assert v.dtype == v2.dtype
    assert dst.a.calls.dtype == np.int64 and int(dst.a.calls) == 7


def test_load_state_dict_rejects_shape_mismatch_atomically():
    m = Pair()
    before = m.state_dict()
    sd = Pair().state_dict()
    for v in sd.values():
        v[...] = 5
    sd["b.bias"] = np.zeros(3, dtype=np.float32)  # the last parameter is wrong
    with pytest.raises(ValueError, match=r"b.bias: expected shape \(2,\), got \(3,\)"):
        m.load_state_dict(sd)
    for k, v in m.state_dict().items():  # nothing was written, not even a.weight
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_keys_strict_and_not():
    m = Pair()
    sd = m.state_dict()
    del sd["a.bias"]
    sd["c.weight"] = np.ones(2)
    with pytest.raises(RuntimeError, match=r"missing keys \['a.bias'\], unexpected keys \['c.weight'\]"):
        m.load_state_dict(sd)
    sd["a.weight"] = np.full(2, 9.0)  # float64 values are cast to the parameter's float32
    m.load_state_dict(sd, strict=False)
    np.testing.assert_array_equal(m.a.weight.data, [9, 9])
    assert m.a.weight.dtype == np.float32


def test_load_state_dict_rejects_non_numeric_and_float_into_int():
    m = Scale(2)
    sd = m.state_dict()
    sd["weight"] = np.array(["a", "b"])
    with pytest.raises(TypeError, match="weight: expected a numeric array, got dtype <U1"):
        m.load_state_dict(sd)
    sd = m.state_dict()
    sd["calls"] = np.array(1.5)
    with pytest.raises(TypeError, match="calls: expected an integer array"):
        m.load_state_dict(sd)
    with pytest.raises(TypeError, match="expected a dict of arrays, got list"):
        m.load_state_dict([1, 2])


# -- dtype conversion ------------------------------------------------------------------------
def test_to_double_float_converts_in_place(rng):
    m = Pair()
    params = m.parameters()
    m.a(np.ones((1, 2), dtype=np.float32))
    assert m.double() is m
    assert m.parameters() == params  # same Parameter objects: optimizers keep working
    for p in m.parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    assert m.a.running_mean.dtype == np.float64
    assert m.a.calls.dtype == np.int64  # integer buffers untouched
    with pytest.raises(RuntimeError, match="no cached forward"):  # the float32 cache is dropped
        m.a.backward(np.ones((1, 2)))
    x = rng.standard_normal((3, 2))
    assert m.a(x).dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    m.to(np.dtype("float64"))
    assert all(p.dtype == np.float64 for p in m.parameters())
    with pytest.raises(TypeError, match="expected float32 or float64, got int32"):
        m.to(np.int32)


# -- copying and printing ----------------------------------------------------------------------
def test_deepcopy_is_independent():
    m = Pair()
    c = copy.deepcopy(m)
    c.a.weight.data[...] = -1
    assert (m.a.weight.data != -1).all()
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in m.named_parameters()]


def test_repr_nests_children():
    text = repr(Pair())
    assert text == "Pair(\n  (a): Scale(n=2)\n  (b): Scale(n=2)\n)"
