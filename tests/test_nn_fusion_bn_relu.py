"""Batch norm + (residual add +) ReLU fused with ``ops.batch_norm_relu_forward/backward``:

- ``Sequential``'s ``BatchNorm2d -> ReLU`` run (forward and backward) against a float64 NumPy
  reference and against the same layers run one by one;
- ``fusion.batch_norm_relu``, the fused forward and backward gk.models' ResNets call;
- the derived backward's replay of ``BatchNorm2d -> [F.add ->] ReLU`` chains (ResNet blocks) against
  the same replay with fusion off (``fusion.enabled = False``: every node runs its own backward):
  forward outputs, every parameter gradient, the input gradients and the running statistics;
  BasicBlocks with and without a projection, a bottleneck block (one ReLU module called three
  times), frozen batch norm, eval mode, batch 1, odd spatial sizes, float32 and float64, every
  ISA, 1 and 2 threads; a spy counts the fused kernel's calls;
- chains that must not fuse (a batch norm output read twice or returned) still give the unfused numbers.
"""
import copy

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn, ops
from gradkit.nn import functional as F
from gradkit.nn import fusion
from test_nn_normalization import assert_close  # scaled max difference, printed on failure

EPS = 1e-5
TOL = {np.float32: 2e-5, np.float64: 1e-11}


def ref(x, w, b, res, dy, training, rm, rv):
    """float64 reference of relu(batch_norm(x) + res): y, dx, dres, dw, db."""
    x = x.astype(np.float64)
    c = x.shape[1]
    if x.size == 0:  # an empty batch: empty results, nothing added to the parameter gradients
        return x.copy(), x.copy(), x.copy(), np.zeros(c), np.zeros(c)
    axes = (0, 2, 3)
    cs = (1, c, 1, 1)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = rm.astype(np.float64), rv.astype(np.float64)
    rstd = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mean.reshape(cs)) * rstd.reshape(cs)
    w64 = np.ones(c) if w is None else w.astype(np.float64)
    b64 = np.zeros(c) if b is None else b.astype(np.float64)
    v = xhat * w64.reshape(cs) + b64.reshape(cs) + (0 if res is None else res.astype(np.float64))
    y = np.maximum(v, 0)
    g = np.where(v > 0, dy.astype(np.float64), 0.0)
    dw, db = (g * xhat).sum(axis=axes), g.sum(axis=axes)
    dxhat = g * w64.reshape(cs)
    if training:
        dx = rstd.reshape(cs) * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                                 - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    else:
        dx = dxhat * rstd.reshape(cs)
    return y, dx, g, dw, db


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the fused kernels (the layers reach them through gradkit.ops)."""
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = ops.batch_norm_relu_forward, ops.batch_norm_relu_backward

    def counted_forward(*args, **kwargs):
        calls["forward"] += 1
        return fwd(*args, **kwargs)

    def counted_backward(*args, **kwargs):
        calls["backward"] += 1
        return bwd(*args, **kwargs)
    monkeypatch.setattr(ops, "batch_norm_relu_forward", counted_forward)
    monkeypatch.setattr(ops, "batch_norm_relu_backward", counted_backward)
    return calls


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def perturb_bn(model, rng):
    """Batch norm weight, bias and running statistics away from their initial values."""
    for m in batch_norms(model):
        c = m.num_features
        dt = m.running_mean.dtype
        if m.weight is not None:
            m.weight.data[...] = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
            m.bias.data[...] = rng.normal(size=c)
        m.running_mean[...] = rng.normal(size=c).astype(dt)
        m.running_var[...] = rng.uniform(0.5, 2.0, c).astype(dt)
    return model


def freeze_bn(model):
    for m in batch_norms(model):
        m.requires_grad_(False)
    return model


# -- Sequential: BatchNorm2d -> ReLU -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 3, 1), (3, 1, 1, 1), (1, 4, 9, 9), (0, 2, 3, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_sequential_run_matches_reference(isa, threads, rng, spy, dtype, shape, training, affine):
    if training and shape[0] * shape[2] * shape[3] == 1:
        pytest.skip("one value per channel has no batch statistics")
    c = shape[1]
    model = perturb_bn(nn.Sequential(nn.BatchNorm2d(c, affine=affine), nn.ReLU()).to(dtype), rng)
    model.train(training)
    bn = model[0]
    rm0, rv0 = bn.running_mean.copy(), bn.running_var.copy()
    w0 = None if bn.weight is None else bn.weight.data.copy()
    b0 = None if bn.bias is None else bn.bias.data.copy()
    x = rng.normal(size=shape).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    model.zero_grad()
    y = model(x)
    dx = model.backward(dy)
    y_ref, dx_ref, _, dw_ref, db_ref = ref(x, w0, b0, None, dy, training, rm0, rv0)
    tol = TOL[dtype]
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, y_ref, tol, "y")
    assert_close(dx, dx_ref, tol * 10, "dx")
    if affine:
        assert_close(bn.weight.grad, dw_ref, tol * 10, "weight.grad")
        assert_close(bn.bias.grad, db_ref, tol * 10, "bias.grad")
    assert spy == {"forward": 1, "backward": 1}
    assert int(bn.num_batches_tracked) == (1 if training else 0)
    if not training:
        np.testing.assert_array_equal(bn.running_mean, rm0)


def one_by_one(model, x, dy):
    h = x
    for m in model:
        h = m(h)
    g = dy
    for m in reversed(list(model)):
        g = m.backward(g)
    return h, g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("frozen", [False, True])
def test_sequential_run_matches_the_layers_one_by_one(threads, rng, spy, dtype, training, frozen):
    gk.manual_seed(4)
    fused = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 3),
                          nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 3, 3)).to(dtype)
    fused = perturb_bn(fused, rng)
    if frozen:
        freeze_bn(fused)
    plain = copy.deepcopy(fused)
    fused.train(training)
    plain.train(training)
    x = rng.normal(size=(3, 3, 7, 5)).astype(dtype)
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    for step in range(2):
        dy = rng.normal(size=(3, 3)).astype(dtype)
        fused.zero_grad()
        plain.zero_grad()
        y = fused(x)
        dx = fused.backward(dy)
        y_ref, dx_ref = one_by_one(plain, x, dy)
        assert_close(y, y_ref, tol, f"y (step {step})")
        assert_close(dx, dx_ref, tol, f"dx (step {step})")
        for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
            assert_close(p.grad, q.grad, tol, f"{name}.grad (step {step})")
        for (name, b), (_, b_ref) in zip(fused.named_buffers(), plain.named_buffers()):
            assert_close(b, b_ref, tol, f"buffer {name} (step {step})")
    assert spy == {"forward": 4, "backward": 4}
    if frozen:
        assert not fused[1].weight.grad.any() and not fused[4].bias.grad.any()
    fused(x)
    assert fused.backward(dy, input_grad=False) is None
    with pytest.raises(RuntimeError, match="no cached forward"):
        fused[1].backward(dy)


def test_sequential_run_before_a_2x2_pool_stays_the_pool_run(rng, spy):
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(3))
    runs = fusion.fusable_runs(list(model))
    assert [k.__name__ for k in runs.values()] == ["_BatchNormReLUPool2", "_BatchNormReLU"]
    model(rng.normal(size=(2, 2, 6, 6)).astype(np.float32))
    assert spy["forward"] == 1


def test_sequential_run_keeps_the_layer_errors(rng):
    model = nn.Sequential(nn.BatchNorm2d(2), nn.ReLU())
    with pytest.raises(ValueError, match="BatchNorm2d: input: expected a 4-D array"):
        model(rng.normal(size=(2, 2, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="BatchNorm2d: input: expected 2 channels"):
        model(rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    with pytest.raises(TypeError, match="BatchNorm2d: input: expected dtype float32"):
        model(rng.normal(size=(2, 2, 6, 6)))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(rng.normal(size=(1, 2, 1, 1)).astype(np.float32))
    model(rng.normal(size=(2, 2, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="Sequential.backward: dy: expected shape"):
        model.backward(np.ones((2, 2, 3, 2), np.float32))


# -- the derived backward: ResNet blocks -----------------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's Bottleneck (one ReLU module called three times), at a small width."""

    def __init__(self, cin, width, stride=1):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(F.add(identity, out))  # the residual first, and the module ReLU at the join


class TwoBlocks(nn.Module):
    """Blocks in a Sequential inside a derived module (each block records on a tape of its own)."""

    def __init__(self, make):
        super().__init__()
        self.blocks = nn.Sequential(*make())

    def forward(self, x):
        return self.blocks(x)


class UserBlock(nn.Module):
    """API.md's Block, as a user writes it: plain calls, so only the backward of its chains is fused."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(F.add(out, identity))


# name: (constructor, input channels, fused chains per forward, of which fused in the forward too)
BLOCKS = {
    "basic": (lambda: gk.models.BasicBlock(4, 4), 4, 2, 2),
    "basic-projection": (lambda: gk.models.BasicBlock(3, 5, stride=2), 3, 2, 2),
    "user-basic": (lambda: UserBlock(4, 4), 4, 2, 0),
    "user-basic-projection": (lambda: UserBlock(3, 5, stride=2), 3, 2, 0),
    "bottleneck": (lambda: Bottleneck(3, 2, stride=2), 3, 3, 0),
    "two-blocks": (lambda: TwoBlocks(lambda: [UserBlock(3, 4), gk.models.BasicBlock(4, 4)]), 3, 4, 2),
    "resnet": (lambda: gk.models.ResNet([1, 1], num_classes=3, widths=(4, 6), stem="cifar"), 3, 5, 5),
}


def run_step(model, x, dy, fused: bool, input_grad=True):
    """One forward and backward with fusion on or off; dy: the output gradient, or a function of the
    output's shape making it. -> (y, the input gradient, dy)."""
    fusion.enabled = fused
    try:
        model.zero_grad()
        y = model(x)
        dy = dy if isinstance(dy, np.ndarray) else dy(y.shape)
        dx = model.backward(dy, input_grad=input_grad)
    finally:
        fusion.enabled = True
    return y, dx, dy


def compare(model, x, rng, tol, spy, expected_calls, training, input_grad=True, steps=2, forward_calls=None):
    """Fused against unfused on a copy: outputs, input and parameter gradients, buffers.
    ``expected_calls``: fused backward kernels per step; ``forward_calls``: fused forward ones."""
    plain = copy.deepcopy(model)
    model.train(training)
    plain.train(training)
    for step in range(steps):
        before = dict(spy)
        y, dx, dy = run_step(model, x, lambda shape: rng.normal(size=shape).astype(x.dtype), True, input_grad)
        assert spy["backward"] - before["backward"] == expected_calls, "the fused kernel ran once per chain"
        if forward_calls is not None:
            assert spy["forward"] - before["forward"] == forward_calls
        before = dict(spy)
        y_ref, dx_ref, _ = run_step(plain, x, dy, False, input_grad)
        assert spy == before, "fusion off: no fused kernel"
        assert_close(y, y_ref, tol, f"y (step {step})")
        if input_grad:
            assert_close(dx, dx_ref, tol, f"dx (step {step})")
        else:
            assert dx is None and dx_ref is None
        assert any(np.any(p.grad != 0) for p in model.parameters() if p.requires_grad), "no gradient at all"
        for (name, p), q in zip(model.named_parameters(), plain.parameters()):
            assert_close(p.grad, q.grad, tol, f"{name}.grad (step {step})")
        for (name, b), (_, b_ref) in zip(model.named_buffers(), plain.named_buffers()):
            assert_close(b, b_ref, tol, f"buffer {name} (step {step})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("training", [True, False])
def test_blocks_fused_backward_matches_unfused(isa, threads, rng, spy, dtype, block, training):
    make, cin, calls, forward_calls = BLOCKS[block]
    gk.manual_seed(7)
    model = perturb_bn(make().to(dtype), rng)
    x = rng.normal(size=(3, cin, 7, 5)).astype(dtype)  # odd spatial sizes
    compare(model, x, rng, TOL[dtype], spy, calls, training, forward_calls=forward_calls)


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("shape", [(1, 3, 3), (1, 1, 1), (2, 1, 1), (1, 9, 2)])
def test_blocks_batch_1_and_odd_sizes(rng, spy, block, shape):
    make, cin, calls, forward_calls = BLOCKS[block]
    gk.manual_seed(8)
    model = perturb_bn(make().to(np.float64), rng)
    x = rng.normal(size=(shape[0], cin) + shape[1:])
    try:  # training mode unless a batch norm sees one value per channel (then eval mode)
        with gk.no_grad():
            copy.deepcopy(model)(x)
        training = True
    except ValueError as e:
        assert "Expected more than 1 value per channel" in str(e)
        training = False
    compare(model, x, rng, TOL[np.float64], spy, calls, training, steps=1, forward_calls=forward_calls)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_frozen_batch_norm(threads, rng, spy, dtype, training):
    """Frozen batch norms get no gradient (their .grad stays as it was); the rest is as unfused."""
    gk.manual_seed(9)
    model = freeze_bn(perturb_bn(Bottleneck(3, 2, stride=2).to(dtype), rng))
    for m in batch_norms(model):
        m.weight.grad[...] = 0.25  # a value left from before the freeze
    x = rng.normal(size=(2, 3, 5, 6)).astype(dtype)
    compare(model, x, rng, TOL[dtype], spy, 3, training)
    for m in batch_norms(model):
        assert np.all(m.weight.grad == 0.25) and np.all(m.bias.grad == 0)


class Join(nn.Module):
    """relu(bn(x) + r) with both inputs given: the fused replay against the float64 reference."""

    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x, r):
        return F.relu(F.add(self.bn(x), r))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_join_matches_reference(isa, threads, rng, spy, dtype, training):
    model = perturb_bn(Join(3).to(dtype), rng)
    model.train(training)
    bn = model.bn
    w0, b0 = bn.weight.data.copy(), bn.bias.data.copy()
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    x = rng.normal(size=(2, 3, 5, 3)).astype(dtype)
    r = rng.normal(size=x.shape).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    y = model(x, r)
    dx, dr = model.backward(dy)
    y_ref, dx_ref, dr_ref, dw_ref, db_ref = ref(x, w0, b0, r, dy, training, rm, rv)
    tol = TOL[dtype]
    assert_close(y, y_ref, tol, "y")
    assert_close(dx, dx_ref, tol * 10, "dx")
    assert_close(dr, dr_ref, tol, "dresidual")
    assert_close(bn.weight.grad, dw_ref, tol * 10, "weight.grad")
    assert_close(bn.bias.grad, db_ref, tol * 10, "bias.grad")
    assert spy["backward"] == 1


class ReadTwice(nn.Module):
    """The batch norm's output is read by the add and by a second call (or returned): no fusion."""

    def __init__(self, returned):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.returned = returned

    def forward(self, x):
        h = self.bn(x)
        y = F.relu(F.add(h, x))
        return (y, h) if self.returned else F.add(y, F.tanh(h))


class AddOutputReadTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        s = F.add(self.bn(x), x)
        return F.add(F.relu(s), s)


class ParameterResidual(nn.Module):
    """The add's other argument is a Parameter: its gradient goes to .grad, left to the add."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.shift = nn.Parameter(np.zeros((2, 3, 4, 4), np.float32))

    def forward(self, x):
        return F.relu(F.add(self.bn(x), self.shift))


@pytest.mark.parametrize("make", [lambda: ReadTwice(False), lambda: ReadTwice(True), AddOutputReadTwice,
                                  ParameterResidual])
def test_chains_read_elsewhere_are_not_fused(rng, spy, make):
    gk.manual_seed(11)
    model = perturb_bn(make(), rng)
    x = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    plain = copy.deepcopy(model)
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    dys = [rng.normal(size=o.shape).astype(np.float32) for o in outs]
    dx = model.backward(*dys)
    assert spy["backward"] == 0
    fusion.enabled = False
    try:
        plain(x)
        dx_ref = plain.backward(*dys)
    finally:
        fusion.enabled = True
    assert_close(dx, dx_ref, 1e-6, "dx")
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert_close(p.grad, q.grad, 1e-6, f"{name}.grad")


def test_grads_ready_hook_sees_final_gradients(rng, spy):
    """The DDP hook: each child reported once, after its last gradient was added."""
    gk.manual_seed(12)
    model = perturb_bn(Bottleneck(3, 2), rng)
    x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
    y = model(x)
    seen = {}

    def hook(mods):
        for m in mods:
            assert id(m) not in seen, f"{type(m).__name__} reported twice"
            seen[id(m)] = [p.grad.copy() for p in m.parameters()]
    object.__setattr__(model, "_grads_ready_hook", hook)
    model.backward(rng.normal(size=y.shape).astype(np.float32))
    assert spy["backward"] == 3
    assert set(seen) == {id(m) for m in model.children()}
    for m in model.children():
        for a, p in zip(seen[id(m)], m.parameters()):
            np.testing.assert_array_equal(a, p.grad)


def test_trace_is_unchanged(rng):
    """Fusion is a replay matter: the trace still shows every layer and op."""
    model = gk.models.BasicBlock(3, 4, stride=2)
    graph = gk.nn._record.trace(model.eval(), rng.normal(size=(1, 3, 5, 5)).astype(np.float32))
    ops_seen = [n.op if n.op != "module" else type(n.module).__name__ for n in graph.nodes]
    assert ops_seen == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "add",
                        "relu"]


@pytest.mark.parametrize("make", [lambda: gk.models.BasicBlock(3, 5, stride=2), lambda: UserBlock(3, 5, stride=2)])
def test_input_grad_false_with_a_frozen_front(rng, spy, make):
    """input_grad=False: parameter gradients as unfused; with conv1, bn1 and the shortcut frozen,
    bn1's chain has nothing to compute and runs no backward, fused or not."""
    gk.manual_seed(10)
    model = perturb_bn(make(), rng)
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    compare(model, x, rng, TOL[np.float32], spy, 2, True, input_grad=False, steps=1)
    for m in (model.conv1, model.bn1, model.downsample):
        m.requires_grad_(False)
    compare(model, x, rng, TOL[np.float32], spy, 1, True, input_grad=False, steps=1)


@pytest.mark.parametrize("training", [True, False])
def test_no_grad_forward_is_fused_and_records_nothing(rng, spy, training):
    gk.manual_seed(13)
    model = perturb_bn(gk.models.BasicBlock(3, 4, stride=2), rng).train(training)
    plain = copy.deepcopy(model)
    x = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
    with gk.no_grad():
        y = model(x)
    assert spy["forward"] == 2
    fusion.enabled = False
    try:
        with gk.no_grad():
            y_ref = plain(x)
    finally:
        fusion.enabled = True
    assert_close(y, y_ref, 1e-6, "y")
    for (name, b), (_, b_ref) in zip(model.named_buffers(), plain.named_buffers()):
        assert_close(b, b_ref, 1e-6, f"buffer {name}")
    with pytest.raises(RuntimeError, match="no cached forward"):
        model.backward(np.ones_like(y))


def test_fused_forward_keeps_the_layer_errors(rng):
    block = gk.models.BasicBlock(3, 3)
    with pytest.raises(TypeError, match="Conv2d: input: expected dtype float32"):
        block(rng.normal(size=(2, 3, 4, 4)))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        block(rng.normal(size=(1, 3, 1, 1)).astype(np.float32))


def test_activation_stats_see_the_fused_relu(rng):
    """The diagnostics hook of the block's ReLU module is told of its output and gradient."""
    from gradkit.diagnostics import _stats
    gk.manual_seed(14)
    block = gk.models.BasicBlock(3, 3)
    _, recorder = _stats.install(block)
    seen = []

    class Spy:
        def forward(self, layer, y):
            seen.append(("forward", layer, y.shape))

        def backward(self, layer, dy):
            seen.append(("backward", layer, dy.shape))
    object.__setattr__(block.relu, "_stats_hook", Spy())
    try:
        y = block(rng.normal(size=(2, 3, 4, 4)).astype(np.float32))
        block.backward(np.ones_like(y))
    finally:
        _stats.uninstall(block)
    assert seen == [("forward", block.relu, (2, 3, 4, 4)), ("backward", block.relu, (2, 3, 4, 4))]
