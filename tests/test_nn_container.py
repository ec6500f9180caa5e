"""Sequential, Residual, Flatten: composition forward/backward, names, indexing, errors."""
from collections import OrderedDict

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Flatten, Linear, Residual, Sequential
from nn_helpers import Scale, assert_close, check_backward_contract

DTYPES = [np.float32, np.float64]


def set_weights(m, rng):
    for p in m.parameters():
        p.data[...] = rng.uniform(-1, 1, p.shape)
    return m


# -- Sequential ------------------------------------------------------------------------
def test_sequential_indexing_len_iteration_append():
    a, b, c = Linear(2, 3), Scale(3), Linear(3, 1)
    seq = Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[1] is b and seq[-1] is b and seq[-2] is a
    assert list(seq) == [a, b]
    assert seq.append(c) is seq
    assert len(seq) == 3 and seq[2] is c
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1", "2"]
    sub = seq[1:]
    assert isinstance(sub, Sequential) and list(sub) == [b, c] and sub[0] is b
    with pytest.raises(IndexError, match=r"index: expected a value in \[-3, 3\), got 3"):
        seq[3]
    with pytest.raises(TypeError, match="index: expected an int or a slice, got str"):
        seq["0"]
    seq[1] = Scale(3)
    assert seq[1] is not b and len(seq) == 3
    del seq[0]
    assert list(seq._modules) == ["0", "1"] and seq[1] is c
    with pytest.raises(TypeError, match=r"modules\[1\]: expected a gk.nn.Module, got int"):
        Sequential(a, 3)
    with pytest.raises(TypeError, match="append: module: expected a gk.nn.Module"):
        seq.append(np.ones(1))


def test_sequential_from_ordered_dict_keeps_names():
    seq = Sequential(OrderedDict([("fc", Linear(2, 2)), ("act", Scale(2))]))
    assert [n for n, _ in seq.named_parameters()] == ["fc.weight", "fc.bias", "act.weight", "act.bias"]
    assert seq[1] is seq.act


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_forward_backward_is_the_composition(dtype, rng):
    seq = set_weights(Sequential(Linear(5, 4), Scale(4), Linear(4, 3)).to(dtype), rng)
    x = rng.uniform(-1, 1, (6, 5)).astype(dtype)
    dy = rng.uniform(-1, 1, (6, 3)).astype(dtype)
    w0, b0 = seq[0].weight.data.astype(np.float64), seq[0].bias.data.astype(np.float64)
    s, t = seq[1].weight.data.astype(np.float64), seq[1].bias.data.astype(np.float64)
    w2, b2 = seq[2].weight.data.astype(np.float64), seq[2].bias.data.astype(np.float64)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    h0 = x64 @ w0.T + b0
    h1 = h0 * s + t
    y_ref = h1 @ w2.T + b2
    dh1 = dy64 @ w2
    dh0 = dh1 * s
    dx_ref = dh0 @ w0
    y = seq(x)
    dx = seq.backward(dy)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_ref, dtype, "y", 10)
    assert_close(dx, dx_ref, dtype, "dx", 10)
    assert_close(seq[2].weight.grad, dy64.T @ h1, dtype, "2.weight grad", 10)
    assert_close(seq[1].weight.grad, (dh1 * h0).sum(0), dtype, "1.weight grad", 10)
    assert_close(seq[0].weight.grad, dh0.T @ x64, dtype, "0.weight grad", 10)
    assert_close(seq[0].bias.grad, dh0.sum(0), dtype, "0.bias grad", 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nested_sequential_and_residual_names_and_gradcheck(dtype, rng):
    model = Sequential(
        Linear(4, 3),
        Sequential(Scale(3), Linear(3, 3)),
        Residual(Sequential(Linear(3, 3), Scale(3))),
        Flatten(),
        Linear(3, 2),
    ).to(dtype)
    set_weights(model, rng)
    assert [n for n, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.1.weight", "1.1.bias",
        "2.block.0.weight", "2.block.0.bias", "2.block.1.weight", "2.block.1.bias", "4.weight", "4.bias"]
    assert "2.block.1.running_mean" in model.state_dict()
    assert gk.gradcheck(model, rng.standard_normal((5, 4)).astype(dtype))


def test_empty_sequential_is_identity():
    seq = Sequential()
    x = np.ones((2, 3), dtype=np.float32)
    assert seq(x) is x
    assert seq.backward(x) is x
    assert repr(seq) == "Sequential()"


def test_sequential_backward_errors():
    seq = Sequential(Linear(3, 2), Scale(2))
    check_backward_contract(seq, np.ones((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Linear: input: expected dtype float32 .*got float64"):
        seq(np.ones((4, 3)))


def test_train_eval_reach_nested_children():
    model = Sequential(Residual(Sequential(Scale(2))), Scale(2))
    model.eval()
    assert all(not m.training for m in model.modules())
    x = np.ones((3, 2), dtype=np.float32)
    model(x)
    assert int(model[0].block[0].calls) == 0  # eval: the running statistics do not move
    model.train()
    model(x)
    assert int(model[0].block[0].calls) == 1 and int(model[1].calls) == 1


# -- Residual ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_forward_backward(dtype, rng):
    block = set_weights(Linear(4, 4).to(dtype), rng)
    res = Residual(block)
    x = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    dy = rng.uniform(-1, 1, (3, 4)).astype(dtype)
    w, b = block.weight.data.astype(np.float64), block.bias.data.astype(np.float64)
    y = res(x)
    dx = res.backward(dy)
    assert_close(y, x + x.astype(np.float64) @ w.T + b, dtype, "y", 4)
    assert_close(dx, dy + dy.astype(np.float64) @ w, dtype, "dx", 4)
    assert_close(block.weight.grad, dy.astype(np.float64).T @ x, dtype, "block.weight grad", 4)
    assert [n for n, _ in res.named_parameters()] == ["block.weight", "block.bias"]
    assert repr(res) == "Residual(\n  (block): Linear(in_features=4, out_features=4, bias=True)\n)"


def test_residual_around_an_identity_block_doubles_the_gradient():
    res = Residual(Sequential())
    x = np.arange(4.0).reshape(2, 2)
    np.testing.assert_array_equal(res(x), 2 * x)
    dy = np.ones((2, 2))
    np.testing.assert_array_equal(res.backward(dy), 2 * dy)
    np.testing.assert_array_equal(dy, np.ones((2, 2)))  # the incoming gradient is not modified


def test_residual_errors():
    with pytest.raises(TypeError, match="Residual: block: expected a gk.nn.Module, got function"):
        Residual(lambda x: x)
    res = Residual(Linear(4, 3))
    with pytest.raises(ValueError, match=r"Residual: block output: expected shape \(2, 4\) \(the input's\), got \(2, 3\)"):
        res(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="Residual.backward: no cached forward"):
        Residual(Linear(2, 2)).backward(np.ones((1, 2), dtype=np.float32))
    res = Residual(Linear(2, 2))
    res(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Residual.backward: dy: expected shape \(1, 2\)"):
        res.backward(np.ones((2, 2), dtype=np.float32))


# -- Flatten -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_forward_backward(dtype, rng):
    f = Flatten()
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    y = f(x)
    assert y.shape == (2, 60) and y.dtype == dtype
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    dy = rng.standard_normal((2, 60)).astype(dtype)
    np.testing.assert_array_equal(f.backward(dy), dy.reshape(2, 3, 4, 5))
    assert f(np.ones((0, 3, 2), dtype=dtype)).shape == (0, 6)
    assert f(np.ones((5, 1), dtype=dtype)).shape == (5, 1)
    strided = x[:, :, ::2, :]
    np.testing.assert_array_equal(f(strided), strided.reshape(2, -1))
    assert Flatten(0, -1)(x).shape == (120,)
    assert Flatten(1, 2)(x).shape == (2, 12, 5)
    assert repr(f) == "Flatten(start_dim=1, end_dim=-1)"
    assert gk.gradcheck(Sequential(Flatten(), Linear(60, 2)), x)


def test_flatten_errors():
    f = Flatten()
    with pytest.raises(ValueError, match=r"Flatten: input: expected .*at least 2-D\), got 1-D of shape \(3,\)"):
        f(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="Flatten: input: expected dtype float32 or float64, got int64"):
        f(np.ones((2, 2), dtype=np.int64))
    with pytest.raises(RuntimeError, match="Flatten.backward: no cached forward"):
        f.backward(np.ones((2, 2), dtype=np.float32))
    f(np.ones((2, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"Flatten.backward: dy: expected shape \(2, 4\) \(the output's\), got \(2, 2, 2\)"):
        f.backward(np.ones((2, 2, 2), dtype=np.float32))


def test_backward_without_input_grad(rng):
    def model():
        gk.manual_seed(0)
        return Sequential(Flatten(), Scale(6), Residual(Sequential(Linear(6, 6))), Linear(6, 2))

    a, b = model(), model()
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    dy = rng.standard_normal((3, 2)).astype(np.float32)
    a(x)
    assert a.backward(dy).shape == x.shape
    b(x)
    assert b.backward(dy, input_grad=False) is None
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
    res = Residual(Linear(3, 3))
    res(np.ones((2, 3), dtype=np.float32))
    assert res.backward(np.ones((2, 3), dtype=np.float32), input_grad=False) is None
    assert res.block.weight.grad.any()
    seq = Sequential(Flatten())  # nothing with parameters: nothing to do
    seq(x)
    assert seq.backward(np.ones((3, 6), dtype=np.float32), input_grad=False) is None


def test_backward_without_input_grad_reaches_the_first_conv(rng, monkeypatch):
    """Sequential.backward(dy, input_grad=False) makes the first Conv2d skip its dx."""
    need_dx = []
    real = gk._core.conv2d_backward  # Conv2d calls the kernel with the arguments it checked at construction
    monkeypatch.setattr(gk._core, "conv2d_backward",
                        lambda *a, **kw: (need_dx.append(kw["need_dx"]), real(*a, **kw))[1])

    def model():
        gk.manual_seed(0)
        return Sequential(gk.nn.Conv2d(1, 2, 3, padding=1), Flatten(), Linear(2 * 5 * 5, 3))

    a, b = model(), model()
    x = rng.standard_normal((2, 1, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 3)).astype(np.float32)
    a(x)
    a.backward(dy)
    b(x)
    assert b.backward(dy, input_grad=False) is None
    assert need_dx == [True, False]  # a's conv computed dx, b's did not
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert_close(q.grad, p.grad, np.float32, name)
    lin = Linear(3, 2)
    lin(np.ones((4, 3), dtype=np.float32))
    assert lin.backward(np.ones((4, 2), dtype=np.float32), input_grad=False) is None
    assert lin.weight.grad.any()


def test_grads_ready_hook_reports_layers_and_fused_runs_in_backward_order():
    nn = gk.nn
    model = Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), Flatten(),
                       Linear(16, 8), nn.ReLU(), Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32)
    seen = []
    index = {id(m): i for i, m in enumerate(model)}
    object.__setattr__(model, "_grads_ready_hook", lambda layers: seen.append([index[id(m)] for m in layers]))
    # Linear; Linear -> ReLU fused; Flatten; BN -> ReLU -> pool fused; Conv2d
    expected = [[7], [5, 6], [4], [1, 2, 3], [0]]
    for input_grad in (False, True):
        seen.clear()
        y = model(x)
        model.backward(np.ones_like(y), input_grad=input_grad)
        assert seen == expected
