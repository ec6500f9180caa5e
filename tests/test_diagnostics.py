"""Diagnostics: the stats kernel against float64 NumPy, and every diagnostic on cases with a known answer."""
import math
import sys

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, nn
from gradkit.nn import fusion


# -- the one-pass kernel -----------------------------------------------------------------------
def _reference(x, lo, hi, nbins, sat_lo, sat_hi, scale=None, shift=None, relu=False):
    """Float64 sums; histogram and saturation with the kernel's own arithmetic in x's dtype."""
    t = x.dtype.type
    c = x.shape[1] if x.ndim >= 2 else 1
    v = x
    if scale is not None:
        shape = ((1, c) + (1,) * (x.ndim - 2)) if x.ndim >= 2 else (1,)
        v = x * scale.astype(x.dtype).reshape(shape) + shift.astype(x.dtype).reshape(shape)
    if relu:
        v = np.maximum(v, t(0))
    vd = v.astype(np.float64)
    moments = np.array([vd.sum(), (vd * vd).sum()])
    w = t(nbins / (hi - lo))
    idx = np.clip(np.nan_to_num((v - t(lo)) * w, nan=0.0), 0, nbins - 1).astype(np.int64)
    counts = np.bincount(idx.ravel(), minlength=nbins)
    sat = np.count_nonzero((v <= t(sat_lo)) | (v >= t(sat_hi)))
    planes = v.reshape(v.shape[0], c, int(np.prod(v.shape[2:], dtype=np.int64)) if v.ndim >= 2 else 1)
    positive = (planes > 0).any(axis=(0, 2)).astype(np.uint8)
    return moments, np.append(counts, sat), positive


SHAPES = [(0, 3), (1, 1), (1, 17), (7, 5), (3, 4, 5, 5), (2, 3, 1, 1), (5, 3, 17, 19), (1, 300), (64, 3, 33, 37), (9,)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_stats_kernel_matches_float64_numpy(isa, threads, dtype, shape, affine, rng):
    x = (rng.standard_normal(shape) * 1.5).astype(dtype)
    c = shape[1] if len(shape) >= 2 else 1
    scale = shift = None
    if affine:
        scale, shift = rng.standard_normal(c) + 1.0, rng.standard_normal(c) * 0.5
    lo, hi, nbins, sat_lo, sat_hi = -2.0, 3.0, 13, -0.99, 0.99
    moments, counts = np.zeros(2), np.zeros(nbins + 1, np.int64)
    positive = np.zeros(c, np.uint8)
    _core.activation_stats(x, moments, counts, positive, scale, shift, affine, lo, hi, sat_lo, sat_hi)
    ref_m, ref_c, ref_p = _reference(x, lo, hi, nbins, sat_lo, sat_hi, scale, shift, affine)
    err = np.abs(moments - ref_m).max()
    assert err <= 1e-9 * max(1.0, np.abs(ref_m).max()), f"moments: max difference {err}"
    np.testing.assert_array_equal(counts, ref_c)
    np.testing.assert_array_equal(positive, ref_p)


def test_stats_kernel_accumulates_and_ignores_thread_count(rng):
    x = rng.standard_normal((32, 16, 30, 30)).astype(np.float32)
    results = []
    for n in (1, 2):
        gk.set_num_threads(n)
        moments, counts = np.zeros(2), np.zeros(9, np.int64)
        _core.activation_stats(x, moments, counts, None, lo=-1, hi=1)
        _core.activation_stats(x, moments, counts, None, lo=-1, hi=1)  # adds, does not overwrite
        results.append((moments.copy(), counts.copy()))
    assert results[0][0].tobytes() == results[1][0].tobytes(), "moments differ between 1 and 2 threads"
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][1][:-1].sum() == 2 * x.size


def test_stats_kernel_rejects_bad_arguments():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match="x"):
        _core.activation_stats(x.astype(np.int32), np.zeros(2), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="moments"):
        _core.activation_stats(x, np.zeros(3), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="counts"):
        _core.activation_stats(x, np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="positive"):
        _core.activation_stats(x, np.zeros(2), np.zeros(3, np.int64), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="lo, hi"):
        _core.activation_stats(x, np.zeros(2), np.zeros(3, np.int64), lo=1.0, hi=1.0)
    with pytest.raises(ValueError, match="scale, shift"):
        _core.activation_stats(x, np.zeros(2), np.zeros(3, np.int64), scale=np.ones(3))


# -- ActivationStats ----------------------------------------------------------------------------
def _fit(model, x, y, callbacks, lr=0.0, epochs=1, batch_size=None, loss=None):
    opt = gk.optim.SGD(model.parameters(), lr=lr)
    trainer = gk.Trainer(model, loss or nn.CrossEntropyLoss(), opt, callbacks=callbacks)
    trainer.fit(x, y, epochs=epochs, batch_size=batch_size or len(x), shuffle=False, verbose=0)
    return trainer


def test_forced_negative_biases_make_relu_layers_dead(rng):
    """Linear->ReLU (fused), BatchNorm1d->ReLU (unfused) and BatchNorm2d->ReLU->MaxPool (fused)
    with biases far below zero never output a positive value: dead fraction 1."""
    gk.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 3 * 3, 8), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    healthy = nn.Sequential(nn.Linear(36, 6), nn.ReLU(), nn.Linear(6, 3))
    for m in (model[1], model[6]):
        m.bias.data[:] = -100.0
    model[8].bias.data[:] = -100.0
    x = rng.standard_normal((16, 1, 7, 7)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    stats = gk.callbacks.ActivationStats()
    _fit(model, x, y, [stats])
    rec = stats.stats[0]
    assert set(rec) == {"2", "7", "9"}
    for name in rec:
        assert rec[name]["dead"] == 1.0, (name, rec[name])
        assert rec[name]["mean"] == 0.0 and rec[name]["std"] == 0.0
        assert rec[name]["hist"][0] == rec[name]["hist"].sum() > 0
    live = gk.callbacks.ActivationStats()
    _fit(healthy, x.reshape(16, -1)[:, :36].copy(), y, [live])
    assert 0.0 <= live.stats[0]["1"]["dead"] < 1.0


def test_saturated_tanh_layer(rng):
    """tanh(100 * x) for x with |x| >= 0.1 is within 0.01 of +-1; for x = 0 it is 0."""
    lin = nn.Linear(4, 4, bias=False)
    lin.weight.data[:] = 100.0 * np.eye(4, dtype=np.float32)
    model = nn.Sequential(lin, nn.Tanh())
    x = np.zeros((10, 4), np.float32)
    x[:, :3] = rng.choice([-1.0, 1.0], (10, 3)) * rng.uniform(0.1, 2.0, (10, 3))  # 30 of 40 saturate
    stats = gk.callbacks.ActivationStats()
    _fit(model, x, np.zeros((10, 4), np.float32), [stats], loss=nn.MSELoss())
    rec = stats.stats[0]["1"]
    assert rec["saturated"] == pytest.approx(0.75)
    assert "dead" not in rec
    assert rec["hist"][0] + rec["hist"][-1] == 30 and rec["hist"].sum() == 40


def test_gradient_std_and_values_match_numpy(rng):
    """Unfused tanh: the output and the gradient arriving there (MSE: 2 (y - t) / n) against float64."""
    gk.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
    x = rng.standard_normal((9, 5)).astype(np.float32)
    t = rng.standard_normal((9, 7)).astype(np.float32)
    w, b = model[0].weight.data.astype(np.float64), model[0].bias.data.astype(np.float64)
    out = np.tanh(x.astype(np.float64) @ w.T + b)
    grad = 2 * (out - t) / out.size
    stats = gk.callbacks.ActivationStats()
    _fit(model, x, t, [stats], loss=nn.MSELoss())
    rec = stats.stats[0]["1"]
    assert rec["mean"] == pytest.approx(out.mean(), rel=1e-5)
    assert rec["std"] == pytest.approx(out.std(), rel=1e-5)
    assert rec["grad_std"] == pytest.approx(grad.std(), rel=1e-4)
    np.testing.assert_array_equal(rec["hist"], np.histogram(out, bins=stats.edges["1"])[0])


def test_fused_runs_give_the_unfused_statistics(rng):
    gk.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(6 * 16, 10), nn.ReLU(), nn.Linear(10, 4))
    x = rng.standard_normal((12, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 12)
    results = []
    for enabled in (True, False):
        fusion.enabled = enabled
        try:
            stats = gk.callbacks.ActivationStats()
            _fit(model, x, y, [stats])
        finally:
            fusion.enabled = True
        results.append(stats.stats[0])
    fused, plain = results
    for name in ("2", "6"):
        for key in ("mean", "std", "grad_std", "dead"):
            assert fused[name][key] == pytest.approx(plain[name][key], rel=1e-5, abs=1e-7), (name, key)
        diff = np.abs(fused[name]["hist"] - plain[name]["hist"]).sum()
        assert diff <= 2, f"layer {name}: histograms differ by {diff} counts"


def test_every_n_batches_and_hooks_removed(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2))
    x, y = rng.standard_normal((50, 3)).astype(np.float32), rng.integers(0, 2, 50)
    stats = gk.callbacks.ActivationStats(every_n_batches=3, sample_every=1)
    _fit(model, x, y, [stats], lr=0.1, epochs=2, batch_size=8)  # 7 batches per epoch, 14 in all
    assert len(stats.stats) == 4 and stats.steps == [3, 6, 9, 12]
    assert all(s["1"]["hist"].sum() == 3 * 8 * 4 for s in stats.stats[:2])  # 3 batches of 8 x 4 units
    assert all("_stats_hook" not in m.__dict__ for m in model.modules())
    with pytest.raises(ValueError, match="every_n_batches"):
        gk.callbacks.ActivationStats(every_n_batches=0)
    with pytest.raises(ValueError, match="sample_every"):
        gk.callbacks.ActivationStats(sample_every=0)


def test_sample_every_measures_one_batch_in_k(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = rng.standard_normal((70, 3)).astype(np.float32), rng.integers(0, 2, 70)
    stats = gk.callbacks.ActivationStats(sample_every=3)
    _fit(model, x, y, [stats], lr=0.1, epochs=2, batch_size=10)  # batches 0, 3, 6 of 7 in each epoch
    assert [s["1"]["hist"].sum() for s in stats.stats] == [3 * 10 * 4] * 2
    assert all(s["1"]["grad_std"] > 0 for s in stats.stats)


def test_validation_passes_are_not_counted(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = rng.standard_normal((40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    stats = gk.callbacks.ActivationStats(sample_every=1)
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1), callbacks=[stats])
    trainer.fit(x, y, epochs=1, batch_size=10, validation_split=0.25, verbose=0)
    assert stats.stats[0]["1"]["hist"].sum() == 30 * 4


def test_activation_stats_plot(tmp_path, rng):
    pytest.importorskip("matplotlib")
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = rng.standard_normal((40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    stats = gk.callbacks.ActivationStats()
    with pytest.raises(ValueError, match="nothing to plot"):
        stats.plot(tmp_path / "a.png")
    _fit(model, x, y, [stats], lr=0.1, epochs=3, batch_size=10)
    path = stats.plot(tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and path.endswith("a.png")


# -- UpdateRatio -----------------------------------------------------------------------------------
def test_known_update_ratio(rng):
    """Plain SGD: the update is lr * grad, so the ratio is lr * ||g|| / ||w||, with g from float64."""
    lin = nn.Linear(3, 2, bias=False)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    lin.weight.data[:] = w
    x = rng.standard_normal((8, 3)).astype(np.float32)
    t = rng.standard_normal((8, 2)).astype(np.float32)
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    g = 2 * (xd @ wd.T - t).T @ xd / t.size
    lr = 0.05
    ratio = gk.callbacks.UpdateRatio()
    _fit(lin, x, t, [ratio], lr=lr, loss=nn.MSELoss())
    expected = lr * np.linalg.norm(g) / np.linalg.norm(wd)
    assert ratio.ratios["weight"] == [pytest.approx(expected, rel=1e-4)]


def test_update_ratio_flags_and_averages(rng, tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 2, 32)
    ratio = gk.callbacks.UpdateRatio()
    _fit(model, x, y, [ratio], lr=0.0, epochs=2, batch_size=8)
    assert all(v == [0.0, 0.0] for v in ratio.ratios.values())
    assert ratio.flagged() == {name: "too small" for name in ratio.ratios}
    ratio = gk.callbacks.UpdateRatio()
    _fit(model, x, y, [ratio], lr=10.0, epochs=1, batch_size=8)
    assert ratio.flagged()["0.weight"] == "too large"
    if pytest.importorskip("matplotlib"):
        ratio.plot(tmp_path / "u.png")
        assert (tmp_path / "u.png").stat().st_size > 1000


# -- propagation -----------------------------------------------------------------------------------
def _tanh_mlp(init, depth=10, width=128):
    layers, d = [], 64
    for _ in range(depth):
        lin = nn.Linear(d, width)
        init(lin.weight)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
        d = width
    layers.append(nn.Linear(d, 10))
    return nn.Sequential(*layers)


def test_propagation_small_gaussian_collapses_and_xavier_does_not(rng):
    gk.manual_seed(0)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    small = gk.diagnostics.propagation(_tanh_mlp(lambda w: nn.init.normal_(w, std=0.01)), x, y, nn.CrossEntropyLoss())
    assert "vanish" in small.verdict and "Xavier" in small.verdict
    assert "layer '3'" in small.verdict  # 0.01 * sqrt(128) shrinks the std ~9x per layer: below 5% at the 2nd tanh
    stds = [r["act_std"] for r in small.rows if r["type"] == "Tanh"]
    assert all(b < a for a, b in zip(stds, stds[1:])) and stds[-1] < 1e-6
    xavier = gk.diagnostics.propagation(_tanh_mlp(nn.init.xavier_normal_), x, y, nn.CrossEntropyLoss())
    assert "healthy" in xavier.verdict, xavier.verdict
    row = xavier.rows[1]
    assert row["name"] == "1" and row["type"] == "Tanh" and "saturated" in row and row["grad_std"] > 0
    assert "Tanh" in str(xavier)


def test_propagation_names_relu_and_he_and_saturation(rng):
    x = rng.standard_normal((64, 64)).astype(np.float32)
    relu = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.ReLU())])
    for m in relu:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
    report = gk.diagnostics.propagation(relu, x)
    assert "vanish" in report.verdict and "He" in report.verdict and report.rows[1]["dead"] == 0.0
    assert all(r["grad_std"] is None for r in report.rows)
    big = _tanh_mlp(lambda w: nn.init.normal_(w, std=1.0), depth=3)
    assert "saturate" in gk.diagnostics.propagation(big, x).verdict


def test_propagation_leaves_the_model_as_it_was(rng, tmp_path):
    gk.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3))
    x = rng.standard_normal((6, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    for p in model.parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
    model[1].eval()
    state, grads = model.state_dict(), [p.grad.copy() for p in model.parameters()]
    modes, rng_state = [m.training for m in model.modules()], _core.rng_state()
    report = gk.diagnostics.propagation(model, x, y, nn.CrossEntropyLoss())
    assert [r["name"] for r in report.rows] == [str(i) for i in range(7)]
    assert report.rows[2]["dead"] is not None and report.rows[3]["grad_std"] > 0
    for k, v in model.state_dict().items():
        assert v.tobytes() == state[k].tobytes(), k
    assert all(p.grad.tobytes() == g.tobytes() for p, g in zip(model.parameters(), grads))
    assert [m.training for m in model.modules()] == modes and _core.rng_state() == rng_state
    assert all("forward" not in m.__dict__ for m in model.modules()) and fusion.enabled
    with pytest.raises(ValueError, match="y, loss"):
        gk.diagnostics.propagation(model, x, y)
    if pytest.importorskip("matplotlib"):
        report.plot(tmp_path / "p.png")
        assert (tmp_path / "p.png").stat().st_size > 1000


# -- sanity_check ------------------------------------------------------------------------------------
def _classifier():
    gk.manual_seed(2)
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 5))


def test_sanity_check_passes_on_a_healthy_model_and_restores_it(rng):
    x = rng.standard_normal((40, 20)).astype(np.float32)
    y = rng.integers(0, 5, 40)
    model = _classifier()
    opt = gk.optim.Adam(model.parameters(), lr=1e-2)
    state, opt_state = model.state_dict(), opt.state_dict()
    report = gk.diagnostics.sanity_check(model, nn.CrossEntropyLoss(), x, y, opt)
    assert report.passed, str(report)
    assert [c["name"] for c in report.checks] == ["initial loss", "L2 raises the loss", "overfits a tiny subset"]
    assert all(v.tobytes() == state[k].tobytes() for k, v in model.state_dict().items())
    assert opt.state_dict()["state"] == opt_state["state"] == {} and model.training


def test_sanity_check_fails_a_broken_model(rng):
    x = rng.standard_normal((40, 20)).astype(np.float32)
    y = rng.integers(0, 5, 40)
    dead = _classifier()
    dead[0].bias.data[:] = -100.0  # every hidden unit dead: nothing can be learned
    report = gk.diagnostics.sanity_check(dead, nn.CrossEntropyLoss(), x, y)
    checks = {c["name"]: c["passed"] for c in report.checks}
    assert not report.passed and not checks["overfits a tiny subset"] and checks["initial loss"]
    loud = _classifier()
    loud[3].weight.data *= 300.0  # logits far from uniform at the start
    checks = {c["name"]: c for c in gk.diagnostics.sanity_check(loud, nn.CrossEntropyLoss(), x, y).checks}
    assert not checks["initial loss"]["passed"] and "ln(5)" in checks["initial loss"]["detail"]


# -- lr_find -----------------------------------------------------------------------------------------
def test_lr_find_restores_state_bit_for_bit(rng, tmp_path):
    x = rng.standard_normal((200, 20)).astype(np.float32)
    y = rng.integers(0, 5, 200)

    def setup():
        model = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 5))
        opt = gk.optim.Adam(model.parameters(), lr=1e-3)
        trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt)
        return model, opt, trainer

    gk.manual_seed(7)
    ref_model, _, ref_trainer = setup()
    ref_trainer.fit(x, y, epochs=2, batch_size=32, verbose=0)
    gk.manual_seed(7)
    model, opt, trainer = setup()
    trainer.fit(x, y, epochs=1, batch_size=32, verbose=0)
    state, opt_state, rng_state = model.state_dict(), opt.state_dict(), _core.rng_state()
    result = gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, num_iter=50, batch_size=32)
    assert len(result.lrs) == len(result.losses) > 10 and 1e-7 <= result.suggestion <= 10.0
    assert result.lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    assert all(v.tobytes() == state[k].tobytes() for k, v in model.state_dict().items())
    assert _core.rng_state() == rng_state and opt.param_groups[0]["lr"] == 1e-3
    for i, st in opt_state["state"].items():
        for key, value in st.items():
            assert np.asarray(opt.state_dict()["state"][i][key]).tobytes() == np.asarray(value).tobytes()
    trainer.fit(x, y, epochs=2, batch_size=32, verbose=0, initial_epoch=1)  # continues as if untouched
    for k, v in ref_model.state_dict().items():
        assert model.state_dict()[k].tobytes() == v.tobytes(), k
    if pytest.importorskip("matplotlib"):
        result.plot(tmp_path / "lr.png")
        assert (tmp_path / "lr.png").stat().st_size > 1000


def test_lr_find_rejects_bad_arguments(rng):
    model = nn.Linear(3, 2)
    opt = gk.optim.SGD(model.parameters(), lr=0.1)
    x, y = rng.standard_normal((8, 3)).astype(np.float32), rng.integers(0, 2, 8)
    with pytest.raises(ValueError, match="start_lr, end_lr"):
        gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_iter"):
        gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, num_iter=1)
    with pytest.raises(TypeError, match="x"):
        gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, [1, 2], y)


# -- issue 25 item 12 and the diagnostics' unclear errors -----------------------------------------------
def test_propagation_refuses_nan_or_empty_input_and_names_non_finite_layers(rng):
    model = _classifier()
    x = rng.standard_normal((16, 20)).astype(np.float32)
    bad = x.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"propagation: x: expected finite values, got 1 NaN/Inf of 320"):
        gk.diagnostics.propagation(model, bad)
    with pytest.raises(ValueError, match=r"propagation: x: expected a batch of at least one sample, got shape \(0, 20\)"):
        gk.diagnostics.propagation(model, x[:0])
    model[0].weight.data[:] = 3e38  # the first layer overflows to inf: not "healthy"
    report = gk.diagnostics.propagation(model, x)
    assert "healthy" not in report.verdict and "not finite at layer '0'" in report.verdict, report.verdict


def test_sanity_check_fails_cross_entropy_over_one_class(rng):
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = np.zeros(20, np.int64)
    report = gk.diagnostics.sanity_check(nn.Linear(4, 1), nn.CrossEntropyLoss(), x, y)
    checks = {c["name"]: c for c in report.checks}
    assert not report.passed and not checks["initial loss"]["passed"]
    assert "cross-entropy over 1 class is 0 for any weights" in checks["initial loss"]["detail"]


def test_lr_find_over_the_widest_range_stays_finite(rng):
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = gk.optim.SGD(model.parameters(), lr=0.1)
    x, y = rng.standard_normal((64, 3)).astype(np.float32), rng.integers(0, 2, 64)
    state = model.state_dict()
    result = gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y, start_lr=1e-300, end_lr=1e300,
                                    num_iter=40, batch_size=16)
    lrs = np.asarray(result.lrs)
    assert np.all(np.isfinite(lrs)) and lrs[0] == 1e-300 and np.all(np.diff(np.log(lrs)) > 0)
    np.testing.assert_allclose(np.diff(np.log(lrs)), (math.log(1e300) - math.log(1e-300)) / 39, rtol=1e-9)  # evenly spaced in log
    assert math.isfinite(result.suggestion) and 1e-300 <= result.suggestion < 1e300, result.suggestion
    assert all(v.tobytes() == state[k].tobytes() for k, v in model.state_dict().items())


def test_diagnostics_refuse_another_models_optimizer(rng):
    model, other = _classifier(), _classifier()
    x, y = rng.standard_normal((40, 20)).astype(np.float32), rng.integers(0, 5, 40)
    opt = gk.optim.Adam(other.parameters())
    for run in (lambda: gk.diagnostics.sanity_check(model, nn.CrossEntropyLoss(), x, y, opt),
                lambda: gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), opt, x, y)):
        with pytest.raises(ValueError, match=r"optimizer: expected an optimizer over the model's parameters"):
            run()


def test_activation_stats_plot_without_activations_or_matplotlib(rng, tmp_path, monkeypatch):
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 2, 32)
    model = nn.Sequential(nn.Linear(4, 2))
    stats = gk.callbacks.ActivationStats()
    gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1),
               callbacks=[stats]).fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"ActivationStats.plot: nothing to plot: the model has no activation layers"):
        stats.plot(tmp_path / "a.png")
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    stats = gk.callbacks.ActivationStats()
    gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1),
               callbacks=[stats]).fit(x, y, epochs=1, verbose=0)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"ActivationStats.plot: needs matplotlib.*pip install 'gradkit\[plot\]'"):
        stats.plot(tmp_path / "a.png")


def test_update_ratio_checks_its_bounds_when_built():
    for kwargs, exc, match in [(dict(low="a"), TypeError, r"UpdateRatio: low: expected a real number, got str"),
                               (dict(high=None), TypeError, r"UpdateRatio: high: expected a real number, got NoneType"),
                               (dict(low=True), TypeError, r"UpdateRatio: low: expected a real number, got bool"),
                               (dict(high=math.inf), ValueError, r"low, high: expected 0 < low < high"),
                               (dict(low=0.1, high=0.01), ValueError, r"low, high: expected 0 < low < high")]:
        with pytest.raises(exc, match=match):
            gk.callbacks.UpdateRatio(**kwargs)
