"""Freezing: ``Parameter.requires_grad``, ``Module.requires_grad_`` and everything that honours them.

A frozen parameter's ``.grad`` is never written (tests fill it with a sentinel first and compare
bytes), the layers skip its gradient work, a frozen front of a Sequential runs no backward at all,
optimizers leave it untouched (no update, decay or state), and the trainable parameters get the
same gradients as in an unfrozen copy.
"""
import copy
import math
import pickle

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, nn, ops
from gradkit.nn import fusion
from backup_helpers import Interrupt, Interrupted
from nn_helpers import assert_close

SENTINEL = 0.375


def backbone_model(dtype=np.float32):
    """Conv-BN-ReLU-Pool, Conv-ReLU (both fused runs in Sequential), then a Linear head; 1x8x8 images."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(96, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)


def images(n, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(dtype)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:, :4].sum(axis=(1, 2)) > 0)
    return x, y


def freeze(model, stop, sentinel=SENTINEL):
    """Freeze model[:stop] and fill its gradients with the sentinel; returns copies of its parameters."""
    model[:stop].requires_grad_(False)
    for p in model[:stop].parameters():
        p.grad[...] = sentinel
    return [(p.data.copy(), p.grad.copy()) for p in model[:stop].parameters()]


def assert_untouched(params, saved, what="frozen parameter"):
    for i, (p, (data, grad)) in enumerate(zip(params, saved)):
        assert not p.requires_grad, f"{what} {i}: requires_grad was changed"
        assert p.data.tobytes() == data.tobytes(), f"{what} {i}: data changed (max {np.abs(p.data - data).max():.3g})"
        assert p.grad.tobytes() == grad.tobytes(), f"{what} {i}: grad was written"


# -- the attribute and requires_grad_ ----------------------------------------------------------------
def test_requires_grad_default_setter_and_bad_values():
    p = nn.Parameter(np.ones(3, np.float32))
    assert p.requires_grad is True
    p.requires_grad = False
    assert p.requires_grad is False and "requires_grad=False" in repr(p)
    assert nn.Parameter(np.ones(2), requires_grad=False).requires_grad is False
    for bad in (1, 0, "yes", None, np.bool_(True)):
        with pytest.raises(TypeError, match=r"requires_grad: expected a bool, got"):
            p.requires_grad = bad
        with pytest.raises(TypeError, match=r"Parameter: requires_grad: expected a bool"):
            nn.Parameter(np.ones(2), requires_grad=bad)
    assert p.requires_grad is False  # a rejected value changes nothing


def test_requires_grad_underscore_sets_every_parameter_and_returns_the_module():
    model = backbone_model()
    head, front = model[7:], model[:5]
    assert front.requires_grad_(False) is front
    assert [p.requires_grad for p in model.parameters()] == [False] * 6 + [True] * 4
    out = model.requires_grad_(False)
    assert out is model and not any(p.requires_grad for p in model.parameters())
    assert head.requires_grad_() is head  # default True
    assert [p.requires_grad for p in model.parameters()] == [False] * 6 + [True] * 4
    assert model._has_parameters() and not model[:5]._has_trainable_parameters()
    assert model._has_trainable_parameters()
    for bad in (0, 1, "False", None):
        with pytest.raises(TypeError, match=r"Sequential.requires_grad_: requires_grad: expected a bool, got"):
            model.requires_grad_(bad)
    assert [p.requires_grad for p in model.parameters()] == [False] * 6 + [True] * 4


def test_requires_grad_survives_deepcopy_pickle_and_dtype_changes():
    model = backbone_model()
    model[0].weight.requires_grad = False
    model[1].requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    assert flags.count(False) == 3
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model)), model.to(np.float64), model.float()):
        assert [p.requires_grad for p in clone.parameters()] == flags
    p = pickle.loads(pickle.dumps(nn.Parameter(np.ones(2), requires_grad=False)))
    assert p.requires_grad is False and p.data.dtype == np.float64


# -- the layers: frozen weight, bias or both -----------------------------------------------------------
LAYERS = {
    "Linear": (lambda: nn.Linear(5, 6), (3, 4, 5)),
    "Conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1), (3, 4, 7, 5)),
    "Conv2d-stride2": (lambda: nn.Conv2d(4, 6, 3, stride=2), (3, 4, 7, 5)),
    "Conv2d-depthwise": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), (2, 4, 5, 6)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(4), (5, 4, 3)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(4), (3, 4, 5, 5)),
    "BatchNorm2d-eval": (lambda: nn.BatchNorm2d(4).eval(), (3, 4, 5, 5)),
    "SyncBatchNorm": (lambda: nn.SyncBatchNorm(4), (3, 4, 5)),
    "LayerNorm": (lambda: nn.LayerNorm(5), (3, 4, 5)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (3, 4, 3, 3)),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(4, affine=True), (3, 4, 5, 4)),
    "Sequential-BN-ReLU-Pool": (lambda: nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)), (3, 4, 6, 6)),
    "Sequential-Linear-ReLU": (lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU()), (4, 5)),
    "Sequential-Conv-ReLU": (lambda: nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()), (2, 4, 6, 6)),
    "Residual": (lambda: nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 5))), (4, 5)),
    "Residual-LayerNorm": (lambda: nn.Residual(nn.LayerNorm(5)), (4, 5)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("frozen", ["weight", "bias", "both"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_partially_frozen_layer_matches_the_unfrozen_one(name, frozen, dtype, rng):
    build, shape = LAYERS[name]
    gk.manual_seed(3)
    ref = build().to(dtype)
    layer = copy.deepcopy(ref)
    names = ("weight", "bias") if frozen == "both" else (frozen,)
    frozen_params = [p for n, p in layer.named_parameters() if n.rsplit(".", 1)[-1] in names]
    assert frozen_params
    for p in frozen_params:
        p.requires_grad = False
        p.grad[...] = SENTINEL
    x = rng.standard_normal(shape).astype(dtype)
    y_ref, y = ref(x), layer(x)
    assert y.tobytes() == y_ref.tobytes()
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref, dx = ref.backward(dy), layer.backward(dy)
    assert dx.tobytes() == dx_ref.tobytes(), f"dx changed (max {np.abs(dx - dx_ref).max():.3g})"
    for (pname, p), q in zip(ref.named_parameters(), layer.parameters()):
        if not q.requires_grad:
            assert np.all(q.grad == SENTINEL), f"{pname}: a frozen gradient was written"
        elif "Conv" in name and frozen == "weight":
            # The conv kernel sums a bias gradient without the weight gradient in another order: a few ULP.
            assert_close(q.grad, p.grad, dtype, what=f"{pname}.grad")
        else:
            assert q.grad.tobytes() == p.grad.tobytes(), f"{pname}: gradient differs from the unfrozen layer's"


@pytest.mark.parametrize("name", ["Linear", "Conv2d", "Sequential-Linear-ReLU", "Sequential-Conv-ReLU", "Residual",
                                  "Residual-LayerNorm"])
def test_frozen_layer_without_input_gradient_does_nothing(name, rng, monkeypatch):
    build, shape = LAYERS[name]
    layer = build().requires_grad_(False)
    for p in layer.parameters():
        p.grad[...] = SENTINEL
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    calls = []
    for op in ("matmul", "conv2d_backward", "relu_backward", "layer_norm_backward"):
        monkeypatch.setattr(ops, op, lambda *a, _op=op, **k: calls.append(_op))
    assert layer.backward_maybe_input(np.ones_like(y), False) is None
    assert calls == []
    assert all(np.all(p.grad == SENTINEL) for p in layer.parameters())


# -- a frozen backbone ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stop", [2, 4, 6])  # conv+BN; + ReLU, pool; + the second conv (fused with its ReLU)
@pytest.mark.parametrize("fused", [True, False])
def test_frozen_backbone_gradients_equal_the_unfrozen_models(dtype, stop, fused, monkeypatch):
    monkeypatch.setattr(fusion, "enabled", fused)
    x, _ = images(10, dtype)
    gk.manual_seed(5)
    ref = backbone_model(dtype)
    model = copy.deepcopy(ref)
    saved = freeze(model, stop)
    dy = np.random.default_rng(1).standard_normal((10, 3)).astype(dtype)
    for input_grad in (True, False):
        ref.zero_grad()
        model.zero_grad()
        assert ref(x).tobytes() == model(x).tobytes()
        dx_ref = ref.backward_maybe_input(dy, input_grad)
        dx = model.backward_maybe_input(dy, input_grad)
        if input_grad:
            assert dx.tobytes() == dx_ref.tobytes()
        else:
            assert dx is None and dx_ref is None
        assert_untouched(model[:stop].parameters(), saved)
        for (name, p), q in zip(ref[stop:].named_parameters(), model[stop:].parameters()):
            assert q.grad.tobytes() == p.grad.tobytes(), f"{name}: gradient differs from the unfrozen model's"


def test_frozen_front_runs_no_backward(monkeypatch):
    """With input_grad=False (what the Trainer asks) a frozen first layer, or a frozen backbone at the
    front, nested or not, is skipped: its backward is never called and no kernel runs for it."""
    x, _ = images(6)
    gk.manual_seed(6)
    model = nn.Sequential(backbone_model()[:6], nn.Flatten(), nn.Linear(96, 3))  # a nested backbone
    model[0].requires_grad_(False)
    calls = []
    for i, m in enumerate(model[0]):
        monkeypatch.setattr(m, "backward", lambda *a, _i=i, **k: calls.append(f"layer {_i}"), raising=False)
        monkeypatch.setattr(m, "backward_maybe_input", lambda *a, _i=i, **k: calls.append(f"layer {_i}"),
                            raising=False)
    for op in ("conv2d_backward", "batch_norm_relu_pool2_backward", "batch_norm_backward", "relu_backward"):
        monkeypatch.setattr(ops, op, lambda *a, _op=op, **k: calls.append(_op))
    # Conv2d calls the kernel itself, with the arguments it checked at construction
    monkeypatch.setattr(_core, "conv2d_backward", lambda *a, **k: calls.append("_core.conv2d_backward"))
    model(x)
    assert model.backward_maybe_input(np.ones((6, 3), np.float32), False) is None
    assert calls == []
    # With the input gradient asked for, the frozen layers do run (for dx) and conv2d_backward is called
    # without the parameter gradients.
    monkeypatch.undo()
    seen = []
    real = _core.conv2d_backward
    monkeypatch.setattr(_core, "conv2d_backward", lambda *a, **k: seen.append(k) or real(*a, **k))
    model(x)
    dx = model.backward(np.ones((6, 3), np.float32))
    assert dx.shape == x.shape
    assert [(k["need_dx"], k["need_dweight"], k["need_dbias"], k["dweight"], k["dbias"]) for k in seen] == \
        [(True, False, False, None, None)] * 2


def test_first_trainable_layer_gets_its_parameter_gradients_only(monkeypatch):
    """The first trainable layer (after a frozen front) computes no input gradient."""
    x, _ = images(4)
    model = backbone_model()
    model[:4].requires_grad_(False)
    seen = []
    real = _core.conv2d_backward
    monkeypatch.setattr(_core, "conv2d_backward", lambda *a, **k: seen.append(k["need_dx"]) or real(*a, **k))
    model(x)
    model.backward_maybe_input(np.ones((4, 3), np.float32), False)
    assert seen == [False]  # only the second conv ran, for its weight and bias gradients


OPTIMIZERS = {
    "SGD": lambda ps: gk.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-2, l1=1e-3),
    "SGD-nesterov": lambda ps: gk.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "Adam": lambda ps: gk.optim.Adam(ps, lr=1e-2, weight_decay=1e-2, l1=1e-3, amsgrad=True),
    "AdamW": lambda ps: gk.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, l1=1e-3),
    "RMSprop": lambda ps: gk.optim.RMSprop(ps, lr=1e-2, weight_decay=1e-2, momentum=0.5, centered=True, l1=1e-3),
    "Adagrad": lambda ps: gk.optim.Adagrad(ps, lr=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1, l1=1e-3),
}


def test_every_optimizer_is_covered():
    classes = {v for v in vars(gk.optim).values() if isinstance(v, type) and issubclass(v, gk.optim.Optimizer)}
    covered = {type(make([nn.Parameter(np.ones(1))])) for make in OPTIMIZERS.values()}
    assert classes - {gk.optim.Optimizer} == covered


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_frozen_backbone_stays_bit_identical_through_fit(opt_name, dtype):
    x, y = images(64, dtype)
    gk.manual_seed(8)
    model = backbone_model(dtype)
    saved = freeze(model, 5)
    head_before = [p.data.copy() for p in model[5:].parameters()]
    opt = OPTIMIZERS[opt_name](model.parameters())
    history = gk.Trainer(model, nn.CrossEntropyLoss(), opt).fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert_untouched(model[:5].parameters(), saved)
    for i, (p, before) in enumerate(zip(model[5:].parameters(), head_before)):
        assert not np.array_equal(p.data, before), f"trainable parameter {i} was not updated"
    frozen = {id(p) for p in model[:5].parameters()}
    assert not any(id(p) in frozen for p in opt.state), "state was created for a frozen parameter"
    assert len(opt.state) == 4


def test_frozen_gradients_are_not_looked_at_by_the_trainer_or_clipping():
    """NaN in a frozen gradient: neither the non-finite check nor clip_grad_norm sees it."""
    x, y = images(32)
    for clip in (None, 0.5):
        gk.manual_seed(9)
        model = backbone_model()
        saved = freeze(model, 2, sentinel=np.nan)
        opt = gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        gk.Trainer(model, nn.CrossEntropyLoss(), opt, clip_grad_norm=clip).fit(x, y, epochs=1, batch_size=8,
                                                                               verbose=0)
        assert_untouched(model[:2].parameters(), saved)
    # A trainable parameter's non-finite gradient is still caught.
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1))
    assert trainer._grads_finite(model.parameters())
    model[-1].bias.grad[1] = np.inf
    assert not trainer._grads_finite(model.parameters())


def test_clip_grad_norm_ignores_frozen_parameters():
    a = nn.Parameter(np.array([3.0, 4.0]))
    b = nn.Parameter(np.array([100.0]), requires_grad=False)
    a.grad[...] = [3.0, 4.0]
    b.grad[...] = 1e6
    norm = gk.optim.clip_grad_norm_([a, b], 1.0)
    assert norm == 5.0
    assert_close(a.grad, [0.6, 0.8], np.float64, what="scaled grad", scale=1e4)  # 1e-6 in PyTorch's factor
    assert b.grad.tolist() == [1e6]
    assert gk.optim.clip_grad_norm_(b, 1.0) == 0.0


# -- optimizers ------------------------------------------------------------------------------------------
def _params(dtype=np.float32):
    rng = np.random.default_rng(2)
    ps = [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in ((3, 4), (4,), (5,), (2, 2))]
    return ps


def _set_grads(ps, seed):
    rng = np.random.default_rng(seed)
    for p in ps:
        if p.requires_grad:
            p.grad[...] = rng.standard_normal(p.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_optimizer_skips_frozen_and_matches_one_without_them(opt_name, dtype):
    """A frozen parameter is untouched and the others are updated exactly as by an optimizer that
    never had it; freezing and unfreezing between steps work (state created lazily)."""
    ps = _params(dtype)
    ref_ps = [copy.deepcopy(ps[i]) for i in (0, 2, 3)]
    ps[1].requires_grad = False
    ps[1].grad[...] = SENTINEL
    frozen_data = ps[1].data.copy()
    opt, ref = OPTIMIZERS[opt_name](ps), OPTIMIZERS[opt_name](ref_ps)
    for step in range(3):
        _set_grads(ps, step)
        _set_grads(ref_ps, step)
        opt.step()
        ref.step()
        assert ps[1].data.tobytes() == frozen_data.tobytes() and np.all(ps[1].grad == SENTINEL)
        for i, (p, q) in enumerate(zip([ps[0], ps[2], ps[3]], ref_ps)):
            assert p.data.tobytes() == q.data.tobytes(), f"step {step}: parameter {i} differs"
        assert ps[1] not in opt.state
    # Unfreeze: the next step creates its state as on a first step (a fresh optimizer's first step).
    ps[1].requires_grad = True
    first = OPTIMIZERS[opt_name]([copy.deepcopy(ps[1])])
    _set_grads(ps, 7)
    first.param_groups[0]["params"][0].grad[...] = ps[1].grad
    opt.step()
    first.step()
    assert ps[1].data.tobytes() == first.param_groups[0]["params"][0].data.tobytes()
    st = opt.state[ps[1]]
    assert st.get("step", 1.0) == 1.0 and st.keys() == first.state[first.param_groups[0]["params"][0]].keys()
    if "step" in st:
        assert opt.state[ps[0]]["step"] == 4.0
    # Freeze an already-stepped parameter: its state is kept and not advanced.
    ps[0].requires_grad = False
    kept = copy.deepcopy(opt.state[ps[0]])
    data0 = ps[0].data.copy()
    _set_grads(ps, 8)
    opt.step()
    assert ps[0].data.tobytes() == data0.tobytes()
    assert list(kept) == list(opt.state[ps[0]])
    for k, v in kept.items():
        assert np.array_equal(v, opt.state[ps[0]][k]), k


def test_optimizer_plan_is_reused_until_a_requires_grad_changes():
    ps = _params()
    opt = gk.optim.Adam(ps, lr=1e-2)
    _set_grads(ps, 0)
    opt.step()
    plan = opt._plans[id(opt.param_groups[0])]
    opt.step()
    assert opt._plans[id(opt.param_groups[0])] is plan
    ps[2].requires_grad = False
    opt.step()
    replanned = opt._plans[id(opt.param_groups[0])]
    assert replanned is not plan and len(replanned.args[0]) == 3
    ps[2].requires_grad = False  # no change: no re-plan
    opt.step()
    assert opt._plans[id(opt.param_groups[0])] is replanned


def test_all_frozen_step_and_zero_grad_change_nothing():
    ps = _params()
    for p in ps:
        p.requires_grad = False
        p.grad[...] = SENTINEL
    before = [p.data.copy() for p in ps]
    opt = gk.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.step()
    opt.zero_grad()
    assert opt.state == {}
    assert all(np.array_equal(p.data, b) and np.all(p.grad == SENTINEL) for p, b in zip(ps, before))


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_optimizer_state_dict_round_trips_with_frozen_parameters(opt_name):
    ps = _params()
    ps[1].requires_grad = False
    opt = OPTIMIZERS[opt_name](ps)
    for step in range(2):
        _set_grads(ps, step)
        opt.step()
    sd = opt.state_dict()
    assert 1 not in sd["state"] and set(sd["state"]) == {0, 2, 3}
    clone_ps = copy.deepcopy(ps)
    clone = OPTIMIZERS[opt_name](clone_ps)
    clone.load_state_dict(sd)
    for seed in (5, 6):
        _set_grads(ps, seed)
        _set_grads(clone_ps, seed)
        opt.step()
        clone.step()
    for p, q in zip(ps, clone_ps):
        assert p.data.tobytes() == q.data.tobytes()
    ps[1].requires_grad = clone_ps[1].requires_grad = True  # unfrozen after a load: state made then
    _set_grads(ps, 9)
    _set_grads(clone_ps, 9)
    opt.step()
    clone.step()
    assert ps[1].data.tobytes() == clone_ps[1].data.tobytes()


def test_zero_grad_leaves_frozen_gradients():
    model = backbone_model()
    saved = freeze(model, 2)
    for p in model[2:].parameters():
        p.grad[...] = 1.0
    model.zero_grad()
    gk.optim.SGD(model.parameters()).zero_grad()
    assert_untouched(model[:2].parameters(), saved)
    assert all(not p.grad.any() for p in model[2:].parameters())


# -- unfreezing mid-training, gradcheck, diagnostics, resuming ------------------------------------------------
class UnfreezeAt(gk.callbacks.Callback):
    """Unfreezes model[:stop] at the start of epoch ``epoch``; records the frozen part after each epoch."""

    def __init__(self, epoch, stop):
        super().__init__()
        self.epoch, self.stop, self.snapshots = epoch, stop, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model[:self.stop].requires_grad_(True)

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append([p.data.copy() for p in self.model[:self.stop].parameters()])


@pytest.mark.parametrize("opt_name", ["SGD", "AdamW"])
def test_unfreeze_mid_training(opt_name):
    x, y = images(48)
    gk.manual_seed(12)
    model = backbone_model()
    saved = freeze(model, 4)
    opt = OPTIMIZERS[opt_name](model.parameters())
    cb = UnfreezeAt(2, 4)
    gk.Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=[cb]).fit(x, y, epochs=4, batch_size=16, verbose=0)
    for epoch in (0, 1):  # frozen epochs: bit-identical
        assert all(a.tobytes() == d.tobytes() for a, (d, _) in zip(cb.snapshots[epoch], saved))
    for epoch in (2, 3):
        assert all(not np.array_equal(a, b) for a, b in zip(cb.snapshots[epoch], cb.snapshots[epoch - 1]))
    assert all(p in opt.state for p in model[:4].parameters())
    if opt_name == "AdamW":  # state created lazily: two epochs of 3 steps after the unfreezing
        assert opt.state[model[0].weight]["step"] == 6.0 and opt.state[model[-1].weight]["step"] == 12.0


def test_gradcheck_skips_frozen_parameters(rng):
    """A frozen parameter gets no gradient, so checking it would fail: gradcheck passes, leaving it out."""
    gk.manual_seed(13)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = rng.standard_normal((2, 3))
    model[0].weight.requires_grad = False
    model[2].bias.requires_grad = False
    model[0].weight.grad[...] = SENTINEL
    assert gk.gradcheck(model, x)  # checking model[0].weight would compare the sentinel with its gradient
    assert np.all(model[0].weight.grad == SENTINEL)
    model[0].weight.requires_grad = True  # the sentinel is then cleared and the real gradient checked
    assert gk.gradcheck(model, x)


def test_update_ratio_leaves_frozen_parameters_out():
    x, y = images(32)
    model = backbone_model()
    model[:2].requires_grad_(False)
    ratio = gk.callbacks.UpdateRatio()
    gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters()), callbacks=[ratio]).fit(
        x, y, epochs=1, batch_size=8, verbose=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert list(ratio.ratios) == trainable and "0.weight" not in ratio.ratios
    assert all(len(v) == 1 and v[0] > 0 for v in ratio.ratios.values())


def _backup_run(tmp_path, at=None):
    gk.manual_seed(14)
    x, y = images(60)
    model = backbone_model()
    model[:4].requires_grad_(False)
    opt = gk.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    cbs = [gk.callbacks.BackupAndRestore(tmp_path / "bk", save_freq=2), Interrupt(at)]
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt, callbacks=cbs)
    history = trainer.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return trainer, history, cbs[1].batches


def test_resumed_fit_with_a_frozen_backbone_is_bit_identical(tmp_path):
    gk.manual_seed(14)
    frozen_start = [p.data.copy() for p in backbone_model()[:4].parameters()]
    expected, expected_history, total = _backup_run(tmp_path / "ref")
    with pytest.raises(Interrupted):
        _backup_run(tmp_path, at=(1, 2))
    trainer, history, batches = _backup_run(tmp_path)
    assert batches == total - 6  # resumed from the backup after 6 batches (every 2), not from the start
    assert history.history == expected_history.history
    for (name, a), b in zip(trainer.model.state_dict().items(), expected.model.state_dict().values()):
        assert a.tobytes() == b.tobytes(), name
    for p, start in zip(trainer.model[:4].parameters(), frozen_start):
        assert p.data.tobytes() == start.tobytes()
    sd, ref_sd = trainer.optimizer.state_dict(), expected.optimizer.state_dict()
    assert sd["state"].keys() == ref_sd["state"].keys() == {4, 5, 6, 7, 8, 9}  # not the frozen 0-3
    for k in sd["state"]:
        assert sd["state"][k]["momentum_buffer"].tobytes() == ref_sd["state"][k]["momentum_buffer"].tobytes()
