"""gk.optim.lr_scheduler: each scheduler's lr sequence against its closed-form formula."""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit.nn import Parameter
from gradkit.optim import lr_scheduler as sched

BASE_LRS = (0.1, 0.02)


def make_opt(kind="SGD", lrs=BASE_LRS, **kw):
    groups = [{"params": [Parameter(np.zeros(3))], "lr": lr} for lr in lrs]
    return getattr(gk.optim, kind)(groups, **kw)


def collect(scheduler, opt, epochs):
    """lrs per epoch 0..epochs: get_last_lr() and the groups' lr must agree."""
    seq = []
    for e in range(epochs + 1):
        last = scheduler.get_last_lr()
        assert isinstance(last, list)
        assert last == [g["lr"] for g in opt.param_groups], f"epoch {e}: get_last_lr() != group lrs"
        assert scheduler.last_epoch == e
        seq.append(last)
        if e < epochs:
            scheduler.step()
    return seq


def assert_seq(seq, formula, what):
    for e, lrs in enumerate(seq):
        for base, lr in zip(BASE_LRS, lrs):
            expected = formula(base, e)
            assert math.isclose(lr, expected, rel_tol=1e-12, abs_tol=1e-15), \
                f"{what}: epoch {e}: got {lr}, expected {expected} (diff {abs(lr - expected):.3e})"


def test_step_lr():
    opt = make_opt()
    s = sched.StepLR(opt, step_size=3, gamma=0.5)
    assert_seq(collect(s, opt, 20), lambda b, e: b * 0.5 ** (e // 3), "StepLR")


def test_multistep_lr_with_repeated_milestone():
    opt = make_opt()
    milestones = [2, 5, 5, 9]
    s = sched.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    assert_seq(collect(s, opt, 15), lambda b, e: b * 0.1 ** sum(m <= e for m in milestones), "MultiStepLR")


def test_exponential_lr():
    opt = make_opt()
    s = sched.ExponentialLR(opt, gamma=0.9)
    assert_seq(collect(s, opt, 30), lambda b, e: b * 0.9 ** e, "ExponentialLR")


@pytest.mark.parametrize("t_max,eta_min", [(10, 0.001), (1, 0.0), (7, 0.005)])
def test_cosine_annealing_lr_over_several_periods(t_max, eta_min):
    opt = make_opt()
    s = sched.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    seq = collect(s, opt, 4 * t_max + 3)
    assert_seq(seq, lambda b, e: eta_min + (b - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2,
               f"CosineAnnealingLR(T_max={t_max})")
    assert math.isclose(seq[t_max][0], eta_min, abs_tol=1e-15)


@pytest.mark.parametrize("start,end,total", [(1 / 3, 1.0, 5), (0.25, 1.0, 4), (1.0, 0.1, 6)])
def test_linear_lr(start, end, total):
    opt = make_opt()
    s = sched.LinearLR(opt, start_factor=start, end_factor=end, total_iters=total)
    assert_seq(collect(s, opt, total + 5), lambda b, e: b * (start + (end - start) * min(e, total) / total),
               "LinearLR")


def test_linear_lr_defaults():
    opt = make_opt()
    s = sched.LinearLR(opt)
    assert s.start_factor == 1 / 3 and s.end_factor == 1.0 and s.total_iters == 5
    assert math.isclose(s.get_last_lr()[0], 0.1 / 3, rel_tol=1e-15)


def _one_cycle_expected(max_lr, n, pct, div, final_div, strategy, three_phase, e, base_m=0.85, max_m=0.95):
    """The 1cycle schedule written out: (lr, momentum) at step e."""
    initial = max_lr / div
    minimum = initial / final_div
    if strategy == "cos":
        def anneal(a, b, t):
            return b + (a - b) / 2 * (1 + math.cos(math.pi * t))
    else:
        def anneal(a, b, t):
            return a + (b - a) * t
    if three_phase:
        ends = [pct * n - 1, 2 * pct * n - 2, n - 1]
        lr_pts = [(initial, max_lr), (max_lr, initial), (initial, minimum)]
        m_pts = [(max_m, base_m), (base_m, max_m), (max_m, max_m)]
    else:
        ends = [pct * n - 1, n - 1]
        lr_pts = [(initial, max_lr), (max_lr, minimum)]
        m_pts = [(max_m, base_m), (base_m, max_m)]
    start = 0.0
    for k, end in enumerate(ends):
        if e <= end or k == len(ends) - 1:
            t = (e - start) / (end - start)
            return anneal(*lr_pts[k], t), anneal(*m_pts[k], t)
        start = end
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind,kw", [("SGD", dict(momentum=0.9)), ("Adam", {}), ("RMSprop", dict(momentum=0.5))])
@pytest.mark.parametrize("strategy,three_phase,pct", [("cos", False, 0.3), ("linear", True, 0.25), ("cos", True, 0.4)])
def test_one_cycle_lr_and_momentum(kind, kw, strategy, three_phase, pct):
    n = 40
    max_lrs = [1.0, 0.5]
    opt = make_opt(kind, **kw)
    s = sched.OneCycleLR(opt, max_lr=max_lrs, total_steps=n, pct_start=pct, anneal_strategy=strategy,
                         three_phase=three_phase)
    for e in range(n):
        assert s.last_epoch == e
        for g, m in zip(opt.param_groups, max_lrs):
            lr, mom = _one_cycle_expected(m, n, pct, 25.0, 1e4, strategy, three_phase, e)
            assert math.isclose(g["lr"], lr, rel_tol=1e-12), f"step {e}: lr {g['lr']} != {lr}"
            got_mom = g["betas"][0] if kind == "Adam" else g["momentum"]
            assert math.isclose(got_mom, mom, rel_tol=1e-12), f"step {e}: momentum {got_mom} != {mom}"
        assert s.get_last_lr() == [g["lr"] for g in opt.param_groups]
        if e < n - 1:
            opt.step()
            s.step()
    assert math.isclose(opt.param_groups[0]["lr"], 1.0 / 25 / 1e4, rel_tol=1e-12)
    if kind == "Adam":
        assert opt.param_groups[0]["betas"][1] == 0.999
    s.step()  # step n is allowed (last_epoch == total_steps), one more is not
    with pytest.raises(ValueError, match="total_steps"):
        s.step()


def test_one_cycle_epochs_form_and_no_momentum_optimizer():
    opt = make_opt("Adagrad", lrs=(0.1,))
    with pytest.raises(ValueError, match="cycle_momentum"):
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    s = sched.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=5, cycle_momentum=False)
    assert s.total_steps == 10 and "momentum" not in opt.param_groups[0]
    assert math.isclose(s.get_last_lr()[0], 0.1 / 25, rel_tol=1e-15)


def plateau_run(opt, metrics, **kw):
    s = sched.ReduceLROnPlateau(opt, **kw)
    out = []
    for m in metrics:
        s.step(m)
        out.append(s.get_last_lr()[0])
        assert out[-1] == opt.param_groups[0]["lr"]
    return s, out


def test_reduce_lr_on_plateau_patience_and_threshold():
    opt = make_opt(lrs=(1.0,))
    # 0.49999 is not better than 0.5 * (1 - 1e-4) = 0.49995 (relative threshold)
    _, lrs = plateau_run(opt, [1.0, 1.0, 1.0, 0.5, 0.49999, 0.6], patience=1, factor=0.5)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_reduce_lr_on_plateau_cooldown_min_lr_and_eps():
    opt = make_opt(lrs=(1.0,))
    _, lrs = plateau_run(opt, [1.0] * 5, patience=0, cooldown=2, factor=0.5)
    assert lrs == [1.0, 0.5, 0.5, 0.5, 0.25]
    opt = make_opt(lrs=(1.0,))
    _, lrs = plateau_run(opt, [1.0] * 6, patience=0, factor=0.1, min_lr=0.005)
    assert lrs[:3] == [1.0, 0.1, 0.1 * 0.1] and lrs[-1] == 0.005
    opt = make_opt(lrs=(1e-8,))
    _, lrs = plateau_run(opt, [1.0] * 4, patience=0, factor=0.5)  # changes below eps=1e-8 are skipped
    assert lrs == [1e-8] * 4


def test_reduce_lr_on_plateau_max_mode_abs_threshold():
    opt = make_opt(lrs=(1.0,))
    s, lrs = plateau_run(opt, [1.0, 1.05, 1.2, 1.25], mode="max", threshold=0.1, threshold_mode="abs",
                         patience=0, factor=0.5)
    assert lrs == [1.0, 0.5, 0.5, 0.25] and s.best == 1.2


def test_scheduler_lr_is_used_by_the_next_optimizer_step():
    p = Parameter(np.zeros(2))
    opt = gk.optim.SGD([p], lr=1.0)
    s = sched.StepLR(opt, step_size=1, gamma=0.5)
    expected = np.zeros(2)
    for e in range(4):
        p.grad[...] = 1.0
        opt.step()
        expected -= 0.5 ** e
        s.step()
    assert np.array_equal(p.data, expected)


@pytest.mark.parametrize("make", [
    lambda o: sched.StepLR(o, step_size=2, gamma=0.5),
    lambda o: sched.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    lambda o: sched.LinearLR(o, start_factor=0.2, total_iters=6),
    lambda o: sched.OneCycleLR(o, max_lr=1.0, total_steps=20),
])
def test_state_dict_resume(make):
    opt = make_opt(momentum=0.9)
    s = make(opt)
    for _ in range(4):
        s.step()
    saved_opt, saved = opt.state_dict(), s.state_dict()
    assert "optimizer" not in saved
    rest = [s.get_last_lr() for _ in range(6) if s.step() is None]

    opt2 = make_opt(momentum=0.9)
    s2 = make(opt2)
    opt2.load_state_dict(saved_opt)
    s2.load_state_dict(saved)
    rest2 = [s2.get_last_lr() for _ in range(6) if s2.step() is None]
    assert rest == rest2


def test_scheduler_validation():
    opt = make_opt()
    with pytest.raises(TypeError, match="optimizer"):
        sched.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        sched.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="end_factor"):
        sched.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="factor"):
        sched.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        sched.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="max_lr"):
        sched.OneCycleLR(opt, max_lr=[1.0], total_steps=5)
    with pytest.raises(ValueError, match="total_steps"):
        sched.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="pct_start"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=5, pct_start=1.5)
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(make_opt(), step_size=2, last_epoch=3)


# ---- validated load_state_dict: checked first, then all or nothing -------------------------

SCHEDULERS = {
    "StepLR": lambda o: sched.StepLR(o, step_size=2, gamma=0.5),
    "MultiStepLR": lambda o: sched.MultiStepLR(o, milestones=[2, 4], gamma=0.5),
    "ExponentialLR": lambda o: sched.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: sched.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    "LinearLR": lambda o: sched.LinearLR(o, start_factor=0.2, total_iters=6),
    "OneCycleLR": lambda o: sched.OneCycleLR(o, max_lr=1.0, total_steps=20),
    "ReduceLROnPlateau": lambda o: sched.ReduceLROnPlateau(o, patience=1),
}

BAD_SCHEDULER_STATE = [  # (scheduler, key, value or a function of the saved dict, error, text)
    ("StepLR", None, lambda sd: [sd], TypeError, "expected a dict"),
    ("StepLR", "gamma", KeyError, ValueError, "missing \\['gamma'\\]"),
    ("StepLR", "unknown", 1, ValueError, "unexpected \\['unknown'\\]"),
    ("StepLR", "last_epoch", "3", TypeError, "last_epoch"),
    ("StepLR", "last_epoch", 2.5, TypeError, "last_epoch"),
    ("StepLR", "last_epoch", -2, ValueError, "last_epoch"),
    ("StepLR", "_step_count", -1, ValueError, "_step_count"),
    ("StepLR", "step_size", 0, ValueError, "step_size"),
    ("StepLR", "gamma", None, TypeError, "gamma"),
    ("StepLR", "base_lrs", [0.1], ValueError, "base_lrs"),
    ("StepLR", "base_lrs", [0.1, "x"], TypeError, r"base_lrs'\]\[1\]"),
    ("StepLR", "_is_initial", 0, TypeError, "_is_initial"),
    ("MultiStepLR", "milestones", {-1: 1}, ValueError, "milestone"),
    ("MultiStepLR", "milestones", [2, 4], TypeError, "milestones"),
    ("CosineAnnealingLR", "T_max", 0, ValueError, "T_max"),
    ("LinearLR", "start_factor", 2.0, ValueError, "start_factor"),
    ("LinearLR", "end_factor", -0.5, ValueError, "end_factor"),
    ("OneCycleLR", "anneal_strategy", "exp", ValueError, "anneal_strategy"),
    ("OneCycleLR", "total_steps", 0, ValueError, "total_steps"),
    ("OneCycleLR", "_phases", [], ValueError, "_phases"),
    ("ReduceLROnPlateau", "mode", "sideways", ValueError, "mode"),
    ("ReduceLROnPlateau", "factor", 1.5, ValueError, "factor"),
    ("ReduceLROnPlateau", "patience", -1, ValueError, "patience"),
    ("ReduceLROnPlateau", "best", "low", TypeError, "best"),
    ("ReduceLROnPlateau", "min_lrs", [0.0], ValueError, "min_lrs"),
]


def _advance(s, n):
    for i in range(n):
        s.step(1.0) if isinstance(s, sched.ReduceLROnPlateau) else s.step()


def assert_same_schedule(s, ref, steps=5):
    """s and ref give the same lr at each of the next steps and end on the same epoch."""
    seq, ref_seq = [], []
    for _ in range(steps):
        _advance(s, 1)
        _advance(ref, 1)
        seq.append(s.get_last_lr())
        ref_seq.append(ref.get_last_lr())
    assert seq == ref_seq and s.last_epoch == ref.last_epoch


@pytest.mark.parametrize("kind,key,value,error,text", BAD_SCHEDULER_STATE)
def test_scheduler_bad_state_dict_raises_and_changes_nothing(kind, key, value, error, text):
    opt, ref_opt = make_opt(momentum=0.9), make_opt(momentum=0.9)
    s, ref = SCHEDULERS[kind](opt), SCHEDULERS[kind](ref_opt)
    saved = s.state_dict()
    _advance(s, 3)
    _advance(ref, 3)
    bad = dict(saved)
    if key is None:
        bad = value(bad)
    elif value is KeyError:
        del bad[key]
    else:
        bad[key] = value
    with pytest.raises(error, match=text) as info:
        s.load_state_dict(bad)
    assert kind in str(info.value)
    assert_same_schedule(s, ref)


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_scheduler_state_dict_loads_through_a_file(kind, tmp_path):
    opt, opt2 = make_opt(momentum=0.9), make_opt(momentum=0.9)
    s, s2 = SCHEDULERS[kind](opt), SCHEDULERS[kind](opt2)
    _advance(s, 3)
    gk.save({"s": s.state_dict(), "o": opt.state_dict()}, tmp_path / "s.npz")
    loaded = gk.load(tmp_path / "s.npz")
    opt2.load_state_dict(loaded["o"])
    s2.load_state_dict(loaded["s"])
    assert_same_schedule(s2, s)
