"""Derived backward: modules that define only forward get their gradients from the recorded calls.

Checked against float64 central differences (gk.gradcheck) and against hand-written backwards:
branches and joins, shared modules, several inputs and outputs, non-array arguments, nesting with
Sequential, the safety rules (plain NumPy, in-place changes), no_grad, the Trainer and tracing."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import _record
from gradkit.nn import functional as F


# API.md's example block: torchvision's BasicBlock, written forward-only as a user writes it
Block = gk.models.BasicBlock


class HandBlock(nn.Module):
    """The same block with a hand-written backward (the reference)."""

    def __init__(self, block):
        super().__init__()
        self.b = block

    def forward(self, x):
        b = self.b
        identity = x if b.downsample is None else b.downsample(x)
        out = b.bn2(b.conv2(b.relu(b.bn1(b.conv1(x)))))
        y = np.maximum(out + identity, 0)
        self._save_for_backward(y=y)
        return y

    def backward(self, dy):
        b = self.b
        d = dy * (self._saved()["y"] > 0)
        dx = b.conv1.backward(b.bn1.backward(b.relu.backward(b.conv2.backward(b.bn2.backward(d)))))
        return dx + (d if b.downsample is None else b.downsample.backward(d))


class TwoBranches(nn.Module):
    """A sum of two branches, a concatenation and a value read three times."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Sequential(nn.Linear(5, 4), nn.Tanh())
        self.head = nn.Linear(13, 3)

    def forward(self, x):
        u, v = self.a(x), self.b(x)
        return self.head(F.cat([F.add(u, v), F.mul(u, v), x], dim=1))


class Shared(nn.Module):
    """One Linear called twice (weight tying), and a Sequential called twice."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4))

    def forward(self, x):
        h = F.tanh(self.lin(x))
        h = self.seq(self.lin(h))
        return self.seq(h)


class MultiIO(nn.Module):
    """Two inputs, a flag passed through, two outputs."""

    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(3, 4)
        self.fb = nn.Linear(2, 4)

    def forward(self, a, b, flip=False):
        u, v = self.fa(a), self.fb(b)
        s = F.sigmoid(F.add(u, v))
        return (F.sub(v, u), s) if flip else (s, F.sub(u, v))


class Outer(nn.Module):
    """Nested derived modules, a Sequential holding a derived module, a multi-output child."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Sequential(nn.Linear(3, 3), TwoBranchesSmall())
        self.io = MultiIO()

    def forward(self, a, b):
        s, d = self.io(self.pre(a), b)
        return F.mul(s, d)


class TwoBranchesSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Linear(3, 3)
        self.q = nn.Linear(3, 3)

    def forward(self, x):
        return F.add(self.p(x), F.relu(self.q(x)))


def _double(m):
    return m.double()


def _backward_once(m, rng, x):
    """Forward, then backward of a random dy into zeroed gradients: y, dy, dx."""
    y = m(x)
    dy = rng.standard_normal(y.shape)
    m.zero_grad()
    return y, dy, m.backward(dy)


@pytest.mark.parametrize("stride, cin, cout", [(1, 4, 4), (2, 3, 5)])
def test_block_matches_the_hand_written_backward_and_central_differences(stride, cin, cout, rng):
    gk.manual_seed(0)
    block = _double(Block(cin, cout, stride))
    x = rng.standard_normal((2, cin, 7, 6))
    assert gk.gradcheck(block, x)
    y, dy, dx = _backward_once(block, rng, x)
    grads = {n: p.grad.copy() for n, p in block.named_parameters()}
    ref = HandBlock(block)
    block.zero_grad()
    np.testing.assert_array_equal(ref(x), y)
    np.testing.assert_allclose(ref.backward(dy), dx, rtol=1e-13, atol=1e-13)
    for n, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, grads[n], rtol=1e-13, atol=1e-13, err_msg=n)


@pytest.mark.parametrize("model", [TwoBranches, Shared, TwoBranchesSmall], ids=lambda c: c.__name__)
def test_branches_and_shared_modules_pass_gradcheck(model, rng):
    gk.manual_seed(1)
    m = _double(model())
    x = rng.standard_normal((3, 5 if model is TwoBranches else (3 if model is TwoBranchesSmall else 4)))
    assert gk.gradcheck(m, x)


def test_a_module_called_twice_gets_both_contributions(rng):
    import copy
    gk.manual_seed(2)
    m = _double(Shared())
    x = rng.standard_normal((5, 4))
    y, dy, _ = _backward_once(m, rng, x)
    # the same computation unrolled into separate copies of the shared layers
    a, b = copy.deepcopy(m.lin), copy.deepcopy(m.lin)
    c, d = copy.deepcopy(m.seq), copy.deepcopy(m.seq)
    for layer in (a, b, c, d):
        layer.zero_grad()
    h = np.tanh(a(x))
    np.testing.assert_allclose(d(c(b(h))), y, rtol=1e-12, atol=1e-14)
    a.backward(b.backward(c.backward(d.backward(dy))) * (1 - h ** 2))
    np.testing.assert_allclose(m.lin.weight.grad, a.weight.grad + b.weight.grad, rtol=1e-12)
    for (n, p), pc, pd in zip(m.seq.named_parameters(), c.parameters(), d.parameters()):
        np.testing.assert_allclose(p.grad, pc.grad + pd.grad, rtol=1e-12, atol=1e-15, err_msg=n)


def test_several_inputs_and_outputs(rng):
    gk.manual_seed(3)
    m = _double(MultiIO())
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    s, d = m(a, b)
    ds, dd = rng.standard_normal(s.shape), rng.standard_normal(d.shape)
    m.zero_grad()
    da, db = m.backward(ds, dd)
    u = a @ m.fa.weight.data.T + m.fa.bias.data
    v = b @ m.fb.weight.data.T + m.fb.bias.data
    sig = 1 / (1 + np.exp(-(u + v)))
    du = ds * sig * (1 - sig) + dd
    dv = ds * sig * (1 - sig) - dd
    np.testing.assert_allclose(da, du @ m.fa.weight.data, rtol=1e-12)
    np.testing.assert_allclose(db, dv @ m.fb.weight.data, rtol=1e-12)
    np.testing.assert_allclose(m.fb.weight.grad, dv.T @ b, rtol=1e-12)
    # None for an output's gradient means zero
    m(a, b)
    m.zero_grad()
    da0, db0 = m.backward(None, dd)
    np.testing.assert_allclose(da0, dd @ m.fa.weight.data, rtol=1e-12)
    np.testing.assert_allclose(db0, -dd @ m.fb.weight.data, rtol=1e-12)
    # the flag passes through and gets None
    d2, s2 = m(a, b, True)
    np.testing.assert_array_equal(d2, -d)
    da2, db2, dflag = m.backward(dd, ds)
    assert dflag is None
    np.testing.assert_allclose(da2, (ds * sig * (1 - sig) - dd) @ m.fa.weight.data, rtol=1e-12)
    with pytest.raises(ValueError, match="expected 2 output gradient"):
        m.backward(ds)


def test_nested_derived_modules_and_sequential_compose(rng):
    gk.manual_seed(4)
    m = _double(Outer())
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    assert gk.gradcheck(m, a, b)
    seq = _double(nn.Sequential(nn.Linear(5, 5), TwoBranches(), nn.ReLU()))
    assert gk.gradcheck(seq, rng.standard_normal((4, 5)))


def test_a_sequential_subclass_with_its_own_forward_gets_a_derived_backward(rng):
    class Skip(nn.Sequential):
        def forward(self, x):
            return F.add(x, self[1](self[0](x)))

    assert Skip._derived_backward and not nn.Sequential._derived_backward
    m = _double(Skip(nn.Linear(3, 3), nn.Tanh()))
    assert gk.gradcheck(m, rng.standard_normal((2, 3)))


def test_plain_numpy_on_a_recorded_value_raises_naming_the_module_and_call(rng):
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.out = nn.Linear(3, 3)

        def forward(self, x):
            h = self.lin(x)
            return self.out(h * 2)

    with pytest.raises(RuntimeError, match=r"Bad.forward: call 1 \(out: Linear\) reads an array"):
        Bad()(rng.standard_normal((2, 3)).astype(np.float32))

    class BadOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x) + 1

    with pytest.raises(RuntimeError, match="BadOutput.forward: output 0 .* is not an input"):
        BadOutput()(np.ones((2, 3), np.float32))
    with gk.no_grad():  # nothing is recorded: plain NumPy is allowed
        assert BadOutput()(np.ones((2, 3), np.float32)).shape == (2, 3)


def test_in_place_change_of_a_recorded_output_raises(rng):
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            out = self.lin(x)
            out += x
            return out

    with pytest.raises(ValueError, match="read-only"):
        InPlace()(np.ones((2, 3), np.float32))


def test_no_grad_records_nothing_and_backward_then_raises(rng):
    m = TwoBranches()
    x = rng.standard_normal((2, 5)).astype(np.float32)
    with gk.no_grad():
        y = m(x)
    assert y.flags.writeable
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(np.ones_like(y))


def test_backward_checks_the_gradient(rng):
    m = TwoBranches()
    y = m(rng.standard_normal((2, 5)).astype(np.float32))
    with pytest.raises(ValueError, match=r"gradient 0: expected shape \(2, 3\)"):
        m.backward(np.ones((3, 3), np.float32))
    with pytest.raises(TypeError, match="gradient 0: expected dtype float32"):
        m.backward(np.ones(y.shape))


def test_input_grad_false_skips_the_input_gradient_and_keeps_parameter_gradients(rng):
    gk.manual_seed(5)
    m = _double(TwoBranches())
    x = rng.standard_normal((3, 5))
    _, dy, _ = _backward_once(m, rng, x)
    full = [p.grad.copy() for p in m.parameters()]
    m(x)
    m.zero_grad()
    assert m.backward(dy, input_grad=False) is None
    for p, g in zip(m.parameters(), full):
        np.testing.assert_array_equal(p.grad, g)


def test_trainer_fits_a_derived_model_with_float64_reference_gradients(rng):
    """One Trainer step on a ResNet-style model updates as the float64 central-difference gradients say."""
    gk.manual_seed(6)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.block = Block(4, 6, stride=2)
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(F.global_avg_pool2d(self.block(F.relu(self.stem(x)))))

    net = _double(Net())
    x = rng.standard_normal((6, 1, 6, 6))
    y = rng.integers(0, 3, 6)
    loss = nn.CrossEntropyLoss()
    before = {n: p.data.copy() for n, p in net.named_parameters()}
    # the reference gradient of the mean loss by central differences (eval of BN in train mode = batch stats)
    ref = {}
    for n, p in net.named_parameters():
        g = np.zeros_like(p.data)
        for i in range(p.data.size):
            flat = p.data.reshape(-1)
            old = flat[i]
            flat[i] = old + 1e-6
            with gk.no_grad():
                up = loss(net(x), y)
            flat[i] = old - 1e-6
            with gk.no_grad():
                down = loss(net(x), y)
            flat[i] = old
            g.reshape(-1)[i] = (up - down) / 2e-6
        ref[n] = g
    opt = gk.optim.SGD(net.parameters(), lr=0.1)
    trainer = gk.Trainer(net, loss, opt, metrics=())
    trainer.fit(x, y, epochs=1, batch_size=6, shuffle=False, verbose=0)
    for n, p in net.named_parameters():
        np.testing.assert_allclose((before[n] - p.data) / 0.1, ref[n], rtol=1e-5, atol=1e-8, err_msg=n)


def test_trace_records_leaves_and_functional_ops(rng):
    gk.manual_seed(7)
    blk = Block(3, 4, stride=2).eval()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    g = _record.trace(blk, x)
    names = [n.name for n in g.nodes]
    assert names == ["downsample.0", "downsample.1", "conv1", "bn1", "relu", "conv2", "bn2", "add", "relu"]
    assert [n.op for n in g.nodes][-2:] == ["add", "relu"]
    assert g.nodes[0].args[0].id == g.inputs[0]
    add = g.nodes[-2]
    assert [a.id for a in add.args] == [g.nodes[6].outputs[0], g.nodes[1].outputs[0]]
    assert g.values[g.outputs[0]][0] == (2, 4, 4, 4)
    res = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())))
    g2 = _record.trace(res, x)
    assert [n.name for n in g2.nodes] == ["0", "1.block.0", "1.block.1", "1.add"]

    class Numpy(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return F.relu(self.c(x) * 2)

    with pytest.raises(ValueError, match="relu .* reads an array"):
        _record.trace(Numpy(), x)


def test_recording_state_is_clean_after_an_error(rng):
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            self.lin(x)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        Fails()(np.ones((1, 2), np.float32))
    assert _record.current() is None
    y = TwoBranches()(rng.standard_normal((2, 5)).astype(np.float32))
    assert y.shape == (2, 3)


def test_diagnostics_name_the_layers_of_derived_modules_by_dotted_path(rng):
    gk.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), Block(3, 4, stride=2), nn.Flatten(), nn.Linear(64, 3))
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    report = gk.diagnostics.propagation(model, x, y, nn.CrossEntropyLoss())
    names = [r["name"] for r in report.rows]
    # the block's forward calls its shortcut first: rows follow the calls
    assert names == ["0", "1.downsample.0", "1.downsample.1", "1.conv1", "1.bn1", "1.relu", "1.conv2", "1.bn2",
                     "2", "3"]
    assert all(r["grad_std"] is not None and r["grad_std"] > 0 for r in report.rows)
    assert "1.downsample.0" in str(report)
    stats = gk.callbacks.ActivationStats()
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1), callbacks=[stats])
    trainer.fit(x, y, epochs=1, verbose=0)
    assert list(stats.stats[0]) == ["1.relu"]
    assert stats.stats[0]["1.relu"]["grad_std"] > 0


class Net(nn.Module):
    """A stem, a residual block and a head; the head's weight is used through F.linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.block = Block(4, 6, stride=2)
        self.weight = nn.Parameter(np.full((3, 6), 0.1, np.float32))
        self.bias = nn.Parameter(np.zeros(3, np.float32))

    def forward(self, x):
        return F.linear(F.global_avg_pool2d(self.block(self.stem(x))), self.weight, self.bias)


def test_a_frozen_backbone_stays_bit_identical_through_training_with_weight_decay(rng):
    gk.manual_seed(9)
    net = Net()
    net.stem.requires_grad_(False)
    net.block.requires_grad_(False)
    frozen = {n: p.data.copy() for n, p in net.named_parameters() if not p.requires_grad}
    sentinel = {n: p.grad.copy() for n, p in net.named_parameters() if not p.requires_grad}
    calls = []
    stem_backward = net.stem.backward

    def spy(*args, **kwargs):
        calls.append(1)
        return stem_backward(*args, **kwargs)

    object.__setattr__(net.stem, "backward", spy)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    head = net.weight.data.copy()
    opt = gk.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    gk.Trainer(net, nn.CrossEntropyLoss(), opt).fit(x, y, epochs=2, batch_size=4, verbose=0)
    for n, p in net.named_parameters():
        if n in frozen:
            np.testing.assert_array_equal(p.data, frozen[n], err_msg=n)
            np.testing.assert_array_equal(p.grad, sentinel[n], err_msg=n)
    assert not np.array_equal(net.weight.data, head)
    assert calls == []  # the frozen stem's backward never ran: nothing needs its input gradient


def test_frozen_parameters_of_functional_ops_get_no_gradient_and_the_rest_is_unchanged(rng):
    gk.manual_seed(10)
    net = Net().double()
    x = rng.standard_normal((5, 1, 6, 6))
    y = net(x)
    dy = rng.standard_normal(y.shape)
    net.zero_grad()
    dx = net.backward(dy)
    full = {n: p.grad.copy() for n, p in net.named_parameters()}
    net.weight.requires_grad = False
    net.block.conv1.requires_grad_(False)
    net.weight.grad[...] = 7.0
    net(x)
    net.zero_grad()
    dx2 = net.backward(dy)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(net.weight.grad, 7.0)
    for n, p in net.named_parameters():
        if p.requires_grad:
            np.testing.assert_array_equal(p.grad, full[n], err_msg=n)
