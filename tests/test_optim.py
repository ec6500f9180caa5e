"""gk.optim: every update rule against a closed-form float64 NumPy reference,
on every ISA and 1 and 2 threads, plus resume, param groups, validation and clipping."""
import copy

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core
from gradkit.nn import Parameter

# Sizes: empty, one element, SIMD tails, a 2-D and a 3-D tensor, and one large
# enough (with the rest) to cross the parallel threshold and a thread split.
SHAPES = [(0,), (1,), (7,), (17,), (33, 5), (3, 4, 5), (40001,)]
STEPS = 8


def assert_close(actual, expected, rtol, atol, what):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if actual.size == 0:
        return
    err = np.abs(actual - expected)
    bad = err > atol + rtol * np.abs(expected)
    assert not bad.any(), (f"{what}: max abs diff {err.max():.3e}, max rel diff "
                           f"{(err / np.maximum(np.abs(expected), 1e-300)).max():.3e} (rtol={rtol}, atol={atol})")


# ---------------------------------------------------------------- references
# Closed-form textbook updates in float64 (the rules of PyTorch's docs); lrs[t] is the lr of step t+1.

def ref_sgd(p, grads, lrs, momentum=0, dampening=0, weight_decay=0, nesterov=False, l1=0.0):
    buf = None
    for lr, g in zip(lrs, grads):
        g = g + weight_decay * p + l1 * np.sign(p)
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            d = g + momentum * buf if nesterov else buf
        else:
            d = g
        p = p - lr * d
    return p


def ref_adagrad(p, grads, lrs, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, l1=0.0):
    s = np.full_like(p, initial_accumulator_value)
    for t, (lr, g) in enumerate(zip(lrs, grads), 1):
        g = g + weight_decay * p + l1 * np.sign(p)
        s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
    return p


def ref_rmsprop(p, grads, lrs, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, l1=0.0):
    v = np.zeros_like(p)
    gbar = np.zeros_like(p)
    buf = np.zeros_like(p)
    for lr, g in zip(lrs, grads):
        g = g + weight_decay * p + l1 * np.sign(p)
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            denom = np.sqrt(v - gbar * gbar) + eps
        else:
            denom = np.sqrt(v) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom
    return p


def ref_adam(p, grads, lrs, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, l1=0.0, decoupled=False):
    b1, b2 = betas
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, (lr, g) in enumerate(zip(lrs, grads), 1):
        g = g + l1 * np.sign(p)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_adamw(p, grads, lrs, **kw):
    kw.setdefault("weight_decay", 1e-2)
    return ref_adam(p, grads, lrs, decoupled=True, **kw)


REFS = {"SGD": ref_sgd, "Adagrad": ref_adagrad, "RMSprop": ref_rmsprop, "Adam": ref_adam, "AdamW": ref_adamw}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01, l1=0.02)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6, l1=0.01)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01, centered=True, alpha=0.9, l1=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, alpha=0.3)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, l1=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.5, amsgrad=True, l1=0.01)),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]


def make_problem(rng, dtype, shapes=SHAPES, steps=STEPS):
    init = []
    for s in shapes:
        a = rng.standard_normal(s)
        if a.size > 2:
            a.flat[::5] = 0.0  # sign(0) = 0 in the L1 term
        init.append(a.astype(dtype))
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return init, grads


def run(name, kw, init, grads, lrs=None):
    params = [Parameter(a) for a in init]
    opt = getattr(gk.optim, name)(params, **kw)
    for t, gs in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
    return params, opt


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_update_matches_reference(name, kw, dtype, isa, threads, rng):
    init, grads = make_problem(rng, dtype)
    params, _ = run(name, kw, init, grads)
    lrs = [kw["lr"]] * len(grads)
    ref_kw = {k: v for k, v in kw.items() if k != "lr"}
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    for i, (p, a) in enumerate(zip(params, init)):
        assert p.data.dtype == dtype
        expected = REFS[name](a.astype(np.float64), [g[i].astype(np.float64) for g in grads], lrs, **ref_kw)
        assert_close(p.data, expected, rtol, atol, f"{name} {kw} {np.dtype(dtype).name} tensor {i} shape {a.shape}")


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_thread_count_gives_identical_bits(name, kw, isa, rng):
    init, grads = make_problem(rng, np.float32, shapes=[(5,), (70001,), (33,)], steps=3)
    results = []
    for n in (1, 2):
        gk.set_num_threads(n)
        params, _ = run(name, kw, init, grads)
        results.append([p.data.copy() for p in params])
    for a, b in zip(*results):
        assert np.array_equal(a, b), f"{name}: 1 and 2 threads differ by {np.abs(a - b).max()}"


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_gradients_are_not_modified(name, kw, rng):
    init, grads = make_problem(rng, np.float32, shapes=[(9,), (300,)], steps=1)
    params = [Parameter(a) for a in init]
    opt = getattr(gk.optim, name)(params, **kw)
    for p, g in zip(params, grads[0]):
        p.grad[...] = g
    opt.step()
    opt.step()
    for p, g in zip(params, grads[0]):
        assert np.array_equal(p.grad, g), f"{name} changed the gradient in place"


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_resume_is_bit_identical(name, kw, rng):
    init, grads = make_problem(rng, np.float32, shapes=[(7,), (40, 3), (1,)], steps=10)
    params, opt = run(name, kw, init, grads[:4])
    saved_params = [p.data.copy() for p in params]
    saved = opt.state_dict()
    snapshot = copy.deepcopy(saved)
    for t in range(4, 10):
        for p, g in zip(params, grads[t]):
            p.grad[...] = g
        opt.step()
    # state_dict() holds copies: the later steps did not change it
    for idx, st in saved["state"].items():
        for key, value in st.items():
            assert np.array_equal(np.asarray(value), np.asarray(snapshot["state"][idx][key])), key

    params2 = [Parameter(a) for a in saved_params]
    opt2 = getattr(gk.optim, name)(params2, **kw)
    opt2.load_state_dict(saved)
    for t in range(4, 10):
        for p, g in zip(params2, grads[t]):
            p.grad[...] = g
        opt2.step()
    for a, b in zip(params, params2):
        assert np.array_equal(a.data, b.data), f"{name}: resumed run differs by {np.abs(a.data - b.data).max()}"


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_param_groups_and_lr_changes(name, rng):
    base = dict(SGD=dict(momentum=0.9), Adam={}, RMSprop={}, Adagrad={})[name]
    init, grads = make_problem(rng, np.float64, shapes=[(11,), (6,)], steps=6)
    pa, pb = Parameter(init[0]), Parameter(init[1])
    opt = getattr(gk.optim, name)([{"params": [pa]}, {"params": [pb], "lr": 0.003}], lr=0.05, **base)
    assert opt.param_groups[1]["lr"] == 0.003 and opt.param_groups[0]["lr"] == 0.05
    lrs_a = [0.05, 0.05, 0.05, 0.2, 0.2, 0.01]
    for t in range(6):
        opt.param_groups[0]["lr"] = lrs_a[t]  # takes effect at this step
        pa.grad[...] = grads[t][0]
        pb.grad[...] = grads[t][1]
        opt.step()
    assert_close(pa.data, REFS[name](init[0], [g[0] for g in grads], lrs_a, **base), 1e-10, 1e-12, "group 0")
    assert_close(pb.data, REFS[name](init[1], [g[1] for g in grads], [0.003] * 6, **base), 1e-10, 1e-12, "group 1")


def test_add_param_group_and_per_group_hyperparameters(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(5,), (5,)], steps=3)
    pa, pb = Parameter(init[0]), Parameter(init[1])
    opt = gk.optim.Adam([pa], lr=0.01)
    opt.add_param_group({"params": pb, "betas": (0.5, 0.9), "amsgrad": True})
    for gs in grads:
        pa.grad[...], pb.grad[...] = gs
        opt.step()
    assert_close(pa.data, ref_adam(init[0], [g[0] for g in grads], [0.01] * 3), 1e-10, 1e-12, "group 0")
    assert_close(pb.data, ref_adam(init[1], [g[1] for g in grads], [0.01] * 3, betas=(0.5, 0.9), amsgrad=True),
                 1e-10, 1e-12, "group 1")
    assert "max_exp_avg_sq" in opt.state[pb] and "max_exp_avg_sq" not in opt.state[pa]


def test_mixed_dtypes_in_one_optimizer(rng):
    init32 = rng.standard_normal(50).astype(np.float32)
    init64 = rng.standard_normal(50)
    grads = [(rng.standard_normal(50).astype(np.float32), rng.standard_normal(50)) for _ in range(4)]
    p32, p64 = Parameter(init32), Parameter(init64)
    opt = gk.optim.Adam([p32, p64], lr=0.01)
    for g32, g64 in grads:
        p32.grad[...], p64.grad[...] = g32, g64
        opt.step()
    assert opt.state[p32]["exp_avg"].dtype == np.float32 and opt.state[p64]["exp_avg"].dtype == np.float64
    assert_close(p32.data, ref_adam(init32.astype(np.float64), [g[0].astype(np.float64) for g in grads], [0.01] * 4),
                 2e-4, 2e-5, "float32 param")
    assert_close(p64.data, ref_adam(init64, [g[1] for g in grads], [0.01] * 4), 1e-10, 1e-12, "float64 param")


def test_state_follows_parameter_dtype_change(rng):
    init, grads = make_problem(rng, np.float32, shapes=[(20,)], steps=4)
    p = Parameter(init[0])
    opt = gk.optim.Adam([p], lr=0.01)
    for gs in grads[:2]:
        p.grad[...] = gs[0]
        opt.step()
    # What a module's .double() does: rebinds .data and .grad
    expected_p = p.data.astype(np.float64)
    expected_state = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in opt.state[p].items()}
    p._set_dtype(np.float64)
    for gs in grads[2:]:
        p.grad[...] = gs[0]
        opt.step()
    assert p.data.dtype == np.float64 and opt.state[p]["exp_avg"].dtype == np.float64
    # the same two steps from the cast state, written out in float64
    m, v, q = expected_state["exp_avg"], expected_state["exp_avg_sq"], expected_p
    for t, gs in enumerate(grads[2:], 3):
        g = gs[0].astype(np.float64)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        q = q - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert_close(p.data, q, 1e-10, 1e-12, "after .double()")


def test_parameters_without_grad_are_skipped(rng):
    a, b = Parameter(rng.standard_normal(4)), Parameter(rng.standard_normal(4))
    before = b.data.copy()
    b.grad = None
    a.grad[...] = 1.0
    opt = gk.optim.Adam([a, b], lr=0.1)
    opt.step()
    assert np.array_equal(b.data, before) and b not in opt.state
    assert opt.state[a]["step"] == 1.0


def test_zero_grad_and_closure(rng):
    p = Parameter(rng.standard_normal(6))
    p.grad[...] = 3.0
    opt = gk.optim.SGD([p], lr=0.1)
    assert opt.step(lambda: 1.25) == 1.25
    opt.zero_grad()
    assert np.array_equal(p.grad, np.zeros(6))
    assert opt.step() is None


def test_sgd_defaults_and_state_keys(rng):
    p = Parameter(rng.standard_normal(3))
    opt = gk.optim.SGD([p])
    assert opt.defaults == dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, l1=0.0)
    assert gk.optim.AdamW([p]).defaults["weight_decay"] == 1e-2
    assert gk.optim.Adam([p]).defaults["betas"] == (0.9, 0.999)
    p.grad[...] = 1.0
    mom = gk.optim.SGD([p], lr=0.1, momentum=0.9)
    mom.step()
    assert set(mom.state[p]) == {"momentum_buffer"}
    assert np.array_equal(mom.state[p]["momentum_buffer"], np.ones(3))  # first step: buffer = grad, no dampening


BAD_HYPER = [
    ("SGD", dict(lr=-0.1), "lr"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "momentum"),
    ("SGD", dict(lr=0.1, weight_decay=-1), "weight_decay"),
    ("SGD", dict(lr=0.1, nesterov=True), "nesterov"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    ("SGD", dict(lr=0.1, l1=-0.1), "l1"),
    ("SGD", dict(lr=float("nan")), "lr"),
    ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    ("Adam", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    ("Adam", dict(eps=-1e-8), "eps"),
    ("AdamW", dict(weight_decay=-0.1), "weight_decay"),
    ("Adagrad", dict(lr_decay=-1), "lr_decay"),
    ("Adagrad", dict(initial_accumulator_value=-1), "initial_accumulator_value"),
    ("Adagrad", dict(eps=-1), "eps"),
    ("RMSprop", dict(alpha=-0.1), "alpha"),
    ("RMSprop", dict(momentum=-0.1), "momentum"),
    ("RMSprop", dict(eps=-1), "eps"),
]


@pytest.mark.parametrize("name,kw,arg", BAD_HYPER)
def test_bad_hyperparameters_raise_value_error(name, kw, arg):
    with pytest.raises(ValueError, match=arg):
        getattr(gk.optim, name)([Parameter(np.zeros(2))], **kw)


def test_bad_hyperparameter_in_a_group_raises():
    with pytest.raises(ValueError, match="lr"):
        gk.optim.Adam([{"params": [Parameter(np.zeros(2))], "lr": -1.0}])


def test_bad_params_raise():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        gk.optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        gk.optim.SGD([p, np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        gk.optim.SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="params"):
        gk.optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="betas"):
        gk.optim.Adam([p], betas=0.9)
    with pytest.raises(TypeError, match="lr"):
        gk.optim.Adam([p], lr="fast")


def test_bad_gradients_raise_without_crashing():
    p = Parameter(np.zeros((2, 3), np.float32))
    opt = gk.optim.Adam([p])
    p.grad = np.zeros((2, 3), np.float64)
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        opt.step()
    p.grad = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"grads\[0\]"):
        opt.step()
    p.grad = np.zeros((4, 6), np.float32)[::2, ::2]  # non-contiguous grads are read as they are
    opt.step()
    assert np.array_equal(p.data, np.zeros((2, 3), np.float32))
    p.data = np.zeros((2, 3), np.int32)
    p.grad = np.zeros((2, 3), np.int32)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        opt.step()


def _group(kind, params, grads, s0=None, s1=None, s2=None, steps=(1.0,), lr=0.1, momentum=0.0, amsgrad=False):
    hyper = _core.OptimHyper(kind=kind, lr=lr, eps=1e-8, momentum=momentum, alpha=0.99, beta1=0.9, beta2=0.999,
                             amsgrad=amsgrad)
    return (hyper, params, grads, s0, s1, s2, list(steps))


def test_core_call_validates_lists():
    p = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\.grads"):
        _core.optim_step([_group("sgd", [p], [])])
    with pytest.raises(ValueError, match="momentum_buffer"):
        _core.optim_step([_group("sgd", [p], [p.copy()], momentum=0.9)])
    with pytest.raises(ValueError, match="kind"):
        _core.optim_step([_group("lion", [p], [p.copy()])])
    with pytest.raises(ValueError, match="steps"):
        _core.optim_step([_group("adam", [p], [p.copy()], [p.copy()], [p.copy()], steps=[0.0])])
    with pytest.raises(ValueError, match="groups"):
        _core.optim_step([(_group("sgd", [p], [p])[0], [p])])
    with pytest.raises(TypeError, match=r"groups\[0\]\[0\]: expected a gradkit._core.OptimHyper"):
        _core.optim_step([("sgd", *_group("sgd", [p], [p.copy()])[1:])])
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"param_groups\[1\]\.params\[0\]"):
        _core.optim_step([_group("sgd", [p], [np.ones(3, np.float32)]), _group("sgd", [ro], [p.copy()])])
    assert np.array_equal(p, np.zeros(3, np.float32))  # the valid first group was not updated either
    _core.optim_step([_group("sgd", [p], [np.ones(3, np.float32)])])
    assert np.array_equal(p, np.full(3, -0.1, np.float32))


def test_load_state_dict_checks_structure(rng):
    p, q = Parameter(rng.standard_normal(3)), Parameter(rng.standard_normal(4))
    opt = gk.optim.Adam([p, q])
    p.grad[...] = 1.0
    q.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        gk.optim.Adam([{"params": [p]}, {"params": [q]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameters"):
        gk.optim.Adam([p]).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        gk.optim.Adam([q, p]).load_state_dict(sd)
    other = gk.optim.Adam([p, q], lr=0.5)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 1e-3 and other.param_groups[0]["params"] == [p, q]
    assert other.state[p]["step"] == 1.0


# ---------------------------------------------------------------- clipping

def _grads_params(rng, dtypes, shapes):
    out = []
    for dt, s in zip(dtypes, shapes):
        p = Parameter(np.zeros(s, dt))
        p.grad[...] = rng.standard_normal(s).astype(dt)
        out.append(p)
    return out


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
def test_clip_grad_norm_matches_reference(max_norm, norm_type, isa, threads, rng):
    shapes = [(0,), (1,), (17,), (33, 7), (40001,)]
    dtypes = [np.float32, np.float64, np.float32, np.float64, np.float32]
    params = _grads_params(rng, dtypes, shapes)
    before = [p.grad.astype(np.float64) for p in params]
    flat = np.concatenate([g.ravel() for g in before])
    expected = np.sqrt(np.sum(flat * flat)) if norm_type == 2.0 else np.abs(flat).max()
    total = gk.optim.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    assert_close(total, expected, 1e-12, 0, "total norm")
    coef = min(1.0, max_norm / (expected + 1e-6))
    for i, (p, g) in enumerate(zip(params, before)):
        rtol = 1e-6 if p.grad.dtype == np.float32 else 1e-13
        assert_close(p.grad, g * coef, rtol, 0, f"clipped grad {i}")
    if coef == 1.0:
        for p, g in zip(params, before):
            assert np.array_equal(p.grad, g)


def test_clip_grad_norm_thread_independent(isa, rng):
    params = _grads_params(rng, [np.float32] * 3, [(100000,), (3,), (50001,)])
    grads = [p.grad.copy() for p in params]
    totals = []
    for n in (1, 2):
        gk.set_num_threads(n)
        for p, g in zip(params, grads):
            p.grad[...] = g
        totals.append(gk.optim.clip_grad_norm_(params, 1.0))
    assert totals[0] == totals[1]


def test_clip_grad_norm_edge_cases(rng):
    p = Parameter(np.zeros(5, np.float32))
    assert gk.optim.clip_grad_norm_(p, 1.0) == 0.0
    assert np.array_equal(p.grad, np.zeros(5, np.float32))
    p.grad = None
    assert gk.optim.clip_grad_norm_([p], 1.0) == 0.0
    q = Parameter(np.zeros(3))
    q.grad[...] = [np.nan, 1.0, 2.0]
    assert np.isnan(gk.optim.clip_grad_norm_([q], 1.0, norm_type="inf"))
    with pytest.raises(ValueError, match="norm_type"):
        gk.optim.clip_grad_norm_([q], 1.0, norm_type=1.0)
    with pytest.raises(ValueError, match="max_norm"):
        gk.optim.clip_grad_norm_([q], -1.0)
    with pytest.raises(TypeError, match=r"parameters\[0\]"):
        gk.optim.clip_grad_norm_([np.zeros(3)], 1.0)


def test_rebound_data_and_grad_are_read_fresh_each_step(rng):
    init, grads = make_problem(rng, np.float64, shapes=[(13,), (4, 3)], steps=5)
    params = [Parameter(a) for a in init]
    opt = gk.optim.SGD(params, lr=0.1, momentum=0.9)
    for t, gs in enumerate(grads):
        for p, g in zip(params, gs):
            p.grad = g.copy()  # a new array every step, as a layer that assigns its gradient
        if t == 2:
            params[0].data = params[0].data.copy()  # rebinding data keeps the state
        opt.step()
    for i, (p, a) in enumerate(zip(params, init)):
        expected = ref_sgd(a, [g[i] for g in grads], [0.1] * 5, momentum=0.9)
        assert_close(p.data, expected, 1e-12, 1e-14, f"tensor {i}")


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)), ("Adam", dict(lr=0.1))])
def test_failed_step_changes_nothing(name, kw, rng):
    init, grads = make_problem(rng, np.float64, shapes=[(5,), (3,)], steps=2)
    params = [Parameter(a) for a in init]
    opt = getattr(gk.optim, name)(params, **kw)
    params[1].grad = np.zeros(4)  # wrong shape: the whole step is rejected before any update
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        opt.step()
    assert all(np.array_equal(p.data, a) for p, a in zip(params, init))
    assert all(set(st) <= {"step"} and st.get("step", 0.0) == 0.0 for st in opt.state.values())
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.copy()
        opt.step()
    for i, (p, a) in enumerate(zip(params, init)):
        expected = REFS[name](a, [g[i] for g in grads], [0.1] * 2, **{k: v for k, v in kw.items() if k != "lr"})
        assert_close(p.data, expected, 1e-12, 1e-14, f"tensor {i} after the rejected step")


# ---------------------------------------------------------------- penalties on the vector path
# Every rule with no penalty, weight_decay, l1 and both, against the float64 references of
# PyTorch's rules, on sizes that put elements in full vectors and in the partial last one
# of every ISA (4, 8 or 16 lanes), and a tensor split between threads (chunks of 64K).

RULES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.5)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, alpha=0.9)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
]
PENALTY_KW = {"none": dict(weight_decay=0.0), "weight_decay": dict(weight_decay=0.05),
              "l1": dict(weight_decay=0.0, l1=0.02), "both": dict(weight_decay=0.05, l1=0.02)}
TAIL_SHAPES = [(0,), (1,), (15,), (17,), (33,), (66001,)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("penalty", list(PENALTY_KW))
@pytest.mark.parametrize("name,kw", RULES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in RULES])
def test_penalised_and_plain_updates_match_reference(name, kw, penalty, dtype, isa, threads, rng):
    kw = {**kw, **PENALTY_KW[penalty]}
    init, grads = make_problem(rng, dtype, shapes=TAIL_SHAPES, steps=3)
    params, _ = run(name, kw, init, grads)
    ref_kw = {k: v for k, v in kw.items() if k != "lr"}
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    for i, (p, a) in enumerate(zip(params, init)):
        expected = REFS[name](a.astype(np.float64), [g[i].astype(np.float64) for g in grads], [kw["lr"]] * 3, **ref_kw)
        assert_close(p.data, expected, rtol, atol, f"{name} {kw} {np.dtype(dtype).name} size {a.size}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", RULES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in RULES])
def test_every_lane_computes_the_same_bits(name, kw, dtype, isa):
    # The same (p, g) in every element: the vector body, the partial last vector and
    # both threads' chunks must all give identical bits.
    kw = {**kw, **PENALTY_KW["both"]}
    gk.set_num_threads(2)
    for value in (0.7, -1.3):
        init = [np.full(n, value, dtype) for n in (33, 66001)]
        grads = [[np.full(n, g, dtype) for n in (33, 66001)] for g in (0.25, -0.5, 2.0)]
        params, _ = run(name, kw, init, grads)
        first = params[0].data[0]
        for p in params:
            assert np.array_equal(p.data, np.full(p.data.shape, first, dtype)), (
                f"{name}: lanes differ: {np.unique(p.data)}")


@pytest.mark.parametrize("name,kw", RULES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in RULES])
def test_l1_sign_of_zero_and_nan_is_zero(name, kw, isa):
    # sign(0) = sign(-0) = sign(NaN) = 0, as torch.sign: a zero parameter with a zero gradient
    # stays exactly 0 under l1 alone; a NaN parameter stays NaN and touches no other lane.
    # Zeros sit in the vector body and in the partial last vector of every ISA.
    kw = {**kw, **PENALTY_KW["l1"]}
    for dtype in (np.float32, np.float64):
        n = 37
        init = np.zeros(n, dtype)
        init[1::4] = -0.0
        init[2::4] = 0.5
        init[3::4] = -0.5
        init[10] = np.nan
        grads = [[np.zeros(n, dtype)] for _ in range(3)]
        params, opt = run(name, kw, [init], grads)
        p = params[0].data
        zero = np.arange(n) % 4 < 2
        zero[10] = False
        assert np.all(p[zero] == 0), f"{name} {np.dtype(dtype).name}: zero parameters moved to {p[zero]}"
        assert np.isnan(p[10]) and not np.isnan(np.delete(p, 10)).any(), f"{name}: NaN handling {p}"
        lrs = [kw["lr"]] * 3
        ref_kw = {k: v for k, v in kw.items() if k != "lr"}
        moving = ~zero
        moving[10] = False
        expected = REFS[name](init[moving].astype(np.float64), [np.zeros(moving.sum())] * 3, lrs, **ref_kw)
        rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
        assert_close(p[moving], expected, rtol, atol, f"{name} l1 on +-0.5")


def test_hyperparameters_are_passed_by_name():
    h = _core.OptimHyper(kind="adam", lr=0.01, beta1=0.8, beta2=0.99, amsgrad=True)
    assert (h.kind, h.lr, h.beta1, h.beta2, h.amsgrad, h.weight_decay, h.decoupled) == (
        "adam", 0.01, 0.8, 0.99, True, 0.0, False)
    assert "beta1=0.8" in repr(h) and "kind='adam'" in repr(h)
    h.kind = "rmsprop"
    h.momentum = 0.5
    assert h.kind == "rmsprop" and h.momentum == 0.5
    with pytest.raises(TypeError):
        _core.OptimHyper("adam", 0.01)  # keyword-only: no field is read by position
    with pytest.raises(ValueError, match="kind"):
        _core.OptimHyper(kind="lion", lr=0.01)
    with pytest.raises(TypeError):
        _core.OptimHyper(kind="adam", lr="fast")
    p = Parameter(np.zeros(3))
    opt = gk.optim.RMSprop([p], lr=0.02, alpha=0.9, momentum=0.3, centered=True, weight_decay=0.1, l1=0.01)
    got = opt._hyper(opt.param_groups[0])
    assert (got.kind, got.lr, got.alpha, got.momentum, got.centered, got.weight_decay, got.l1) == (
        "rmsprop", 0.02, 0.9, 0.3, True, 0.1, 0.01)


def test_changed_hyperparameters_take_effect_at_the_next_step(rng):
    # The named hyperparameters are cached per group: a value written into the group
    # (as a scheduler does) must be used by the next step.
    init, grads = make_problem(rng, np.float64, shapes=[(19,)], steps=4)
    p = Parameter(init[0])
    opt = gk.optim.SGD([p], lr=0.1)
    for t, gs in enumerate(grads):
        if t == 2:
            opt.param_groups[0].update(weight_decay=0.2, l1=0.05)
        p.grad[...] = gs[0]
        opt.step()
    mid = ref_sgd(init[0], [g[0] for g in grads[:2]], [0.1] * 2)
    expected = ref_sgd(mid, [g[0] for g in grads[2:]], [0.1] * 2, weight_decay=0.2, l1=0.05)
    assert_close(p.data, expected, 1e-12, 1e-14, "after changing weight_decay and l1")


# ---------------------------------------------------------------- validated load_state_dict

def _trained(name, kw, init, grads):
    params = [Parameter(a.copy()) for a in init]
    opt = getattr(gk.optim, name)(params, **kw)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad[...] = g
        opt.step()
    return params, opt


def _set(path, value):
    """A mutation of a state dict: sd[path[0]][path[1]]... = value."""
    def mutate(sd):
        d = sd
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return sd
    return mutate


def _del(path):
    def mutate(sd):
        d = sd
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
        return sd
    return mutate


def _sgd_state(sd):
    p, q = Parameter(np.zeros(3)), Parameter(np.zeros((2, 2)))
    sgd = gk.optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad[...], q.grad[...] = 1.0, 1.0
    sgd.step()
    return sgd.state_dict()


BAD_STATE = [  # (mutation of a valid Adam state dict, error type, text the message must contain)
    (lambda sd: [sd], TypeError, "expected a dict"),
    (lambda sd: None, TypeError, "expected a dict"),
    (_del(["state"]), ValueError, "keys"),
    (_set(["extra"], 1), ValueError, "extra"),
    (_sgd_state, ValueError, "SGD"),
    (_set(["param_groups"], "groups"), TypeError, "param_groups"),
    (lambda sd: {**sd, "param_groups": sd["param_groups"] * 2}, ValueError, "parameter groups"),
    (_set(["param_groups", 0], 7), TypeError, r"\['param_groups'\]\[0\]"),
    (_del(["param_groups", 0, "params"]), ValueError, "'params'"),
    (_set(["param_groups", 0, "params"], [0]), ValueError, "parameters"),
    (_set(["param_groups", 0, "params"], [0, 0]), ValueError, "twice"),
    (_set(["param_groups", 0, "params"], [0, "1"]), TypeError, "index"),
    (_set(["param_groups", 0, "lr"], -5), ValueError, "lr"),
    (_set(["param_groups", 0, "lr"], "fast"), TypeError, "lr"),
    (_set(["param_groups", 0, "betas"], (2, 7)), ValueError, "betas"),
    (_set(["param_groups", 0, "eps"], -1.0), ValueError, "eps"),
    (_set(["param_groups", 0, "weight_decay"], float("nan")), ValueError, "weight_decay"),
    (_del(["param_groups", 0, "amsgrad"]), ValueError, "amsgrad"),
    (_set(["state"], [1, 2]), TypeError, r"\['state'\]"),
    (_set(["state", 5], {"step": 1.0}), ValueError, "indices"),
    (_set(["state", -1], {"step": 1.0}), ValueError, "indices"),
    (_set(["state", 1.5], {"step": 1.0}), TypeError, "int parameter indices"),
    (_set(["state", 0], "state"), TypeError, r"\['state'\]\[0\]"),
    (_set(["state", 0, "step"], "two"), TypeError, "step"),
    (_set(["state", 0, "step"], -1.0), ValueError, "step"),
    (_set(["state", 0, "step"], float("nan")), ValueError, "step"),
    (_set(["state", 0, "step"], 1.5), ValueError, "step"),
    (_del(["state", 0, "step"]), ValueError, "'step'"),
    (_del(["state", 0, "exp_avg"]), ValueError, "exp_avg"),
    (_set(["state", 0, "exp_avg"], np.zeros(4)), ValueError, "shape"),
    (_set(["state", 1, "exp_avg_sq"], np.zeros((2, 2), np.int64)), TypeError, "exp_avg_sq"),
    (_set(["state", 1, "exp_avg_sq"], [[0.0, 0.0], [0.0, 0.0]]), TypeError, "exp_avg_sq"),
    (_set(["state", 1, "junk"], "text"), TypeError, "junk"),
]


@pytest.mark.parametrize("mutate,error,text", BAD_STATE)
def test_bad_state_dict_raises_and_changes_nothing(mutate, error, text, rng):
    init, grads = make_problem(rng, np.float64, shapes=[(3,), (2, 2)], steps=6)
    params, opt = _trained("Adam", dict(lr=0.01), init, grads[:2])
    ref_params, ref = _trained("Adam", dict(lr=0.01), init, grads[:2])
    opt.param_groups[0]["lr"] = ref.param_groups[0]["lr"] = 0.02  # not what the saved dict holds
    bad = mutate(copy.deepcopy(opt.state_dict()))
    with pytest.raises(error, match=text) as info:
        opt.load_state_dict(bad)
    assert "Adam" in str(info.value)
    # Nothing changed: both continue bit for bit.
    for gs in grads[2:]:
        for p, q, g in zip(params, ref_params, gs):
            p.grad[...] = g
            q.grad[...] = g
        opt.step()
        ref.step()
    for p, q in zip(params, ref_params):
        assert np.array_equal(p.data, q.data), f"the failed load changed the trajectory by {np.abs(p.data - q.data).max()}"
    assert opt.param_groups[0]["lr"] == 0.02


def test_state_dict_loads_after_changing_settings_and_through_a_file(rng, tmp_path):
    init, grads = make_problem(rng, np.float32, shapes=[(5,), (3, 2)], steps=4)
    params, opt = _trained("Adam", dict(lr=0.01, amsgrad=True), init, grads[:2])
    opt.param_groups[0]["amsgrad"] = False  # max_exp_avg_sq stays in the state
    gk.save({"optimizer": opt.state_dict()}, tmp_path / "o.npz")
    params2 = [Parameter(p.data.copy()) for p in params]
    opt2 = gk.optim.Adam(params2, lr=0.5)
    opt2.load_state_dict(gk.load(tmp_path / "o.npz")["optimizer"])
    for gs in grads[2:]:
        for p, q, g in zip(params, params2, gs):
            p.grad[...] = g
            q.grad[...] = g
        opt.step()
        opt2.step()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(params, params2))
    # A fresh optimizer's state (no step yet) loads too.
    gk.optim.SGD([Parameter(np.zeros(2))], momentum=0.9).load_state_dict(
        gk.optim.SGD([Parameter(np.zeros(2))], momentum=0.5).state_dict())
