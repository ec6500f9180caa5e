"""gk.Trainer end to end on small synthetic problems: fit, validation, NaN stop, evaluate, predict."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn


def blobs(rng, n=600, d=8, classes=3, spread=0.3):
    """Well separated Gaussian blobs: a separable classification problem."""
    centers = rng.normal(size=(classes, d)) * 3.0
    y = rng.integers(0, classes, size=n)
    x = centers[y] + spread * rng.normal(size=(n, d))
    return x.astype(np.float32), y.astype(np.int64)


def mlp(d=8, hidden=32, classes=3):
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def make_trainer(model, lr=1e-2, **kw):
    return gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=lr), **kw)


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same_state(a, b, what="state"):
    assert a.keys() == b.keys()
    for k in a:
        diff = np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0.0)
        assert diff == 0.0, f"{what}: {k} differs by {diff:.3e}"


# -- learning -----------------------------------------------------------------------
def test_separable_problem_reaches_100_percent(rng):
    gk.manual_seed(0)
    x, y = blobs(rng, n=800)
    x_test, y_test = x[600:], y[600:]
    x, y = x[:600], y[:600]
    trainer = make_trainer(mlp())
    history = trainer.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] >= 0.99, history.history
    assert history.history["loss"][-1] < history.history["loss"][0]
    result = trainer.evaluate(x_test, y_test)
    assert set(result) == {"loss", "accuracy"}
    assert result["accuracy"] >= 0.99, result


def test_regression_with_mse_and_sgd(rng):
    gk.manual_seed(1)
    w = rng.normal(size=(5, 2))
    x = rng.normal(size=(512, 5)).astype(np.float32)
    y = (x @ w).astype(np.float32)
    model = nn.Sequential(nn.Linear(5, 2))
    trainer = gk.Trainer(model, nn.MSELoss(), gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), metrics=())
    history = trainer.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "lr"}
    assert history.history["loss"][-1] < 1e-4, history.history["loss"]
    np.testing.assert_allclose(model[0].weight.data, w.T, atol=1e-2)
    assert trainer.evaluate(x, y)["loss"] < 1e-4


def test_float64_model_and_data(rng):
    gk.manual_seed(2)
    x, y = blobs(rng, n=200)
    model = mlp().double()
    history = make_trainer(model).fit(x.astype(np.float64), y, epochs=3, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert model[0].weight.data.dtype == np.float64


# -- history and validation ------------------------------------------------------------
def test_history_records_metrics_val_and_lr(rng):
    gk.manual_seed(3)
    x, y = blobs(rng, n=300)
    trainer = make_trainer(mlp(), lr=5e-3)
    history = trainer.fit(x[:200], y[:200], epochs=4, batch_size=50, validation_data=(x[200:], y[200:]), verbose=0)
    assert trainer.history is history
    assert history.epoch == [0, 1, 2, 3]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 4 for v in history.history.values())
    assert history.history["lr"] == [5e-3] * 4
    assert len(history.epoch_time) == 4 and all(t > 0 for t in history.epoch_time)
    # The last validation entry is the model's state at the end.
    final = trainer.evaluate(x[200:], y[200:])
    np.testing.assert_allclose(history.history["val_loss"][-1], final["loss"], rtol=1e-6)
    np.testing.assert_allclose(history.history["val_accuracy"][-1], final["accuracy"], rtol=1e-12)


def test_validation_split_takes_the_last_fraction_before_shuffling(rng):
    gk.manual_seed(4)
    x, y = blobs(rng, n=100)
    x[75:] = np.nan  # the held-out rows: never trained on, or the NaN check would fire
    trainer = make_trainer(mlp())
    history = trainer.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert history.params["samples"] == 75 and history.params["validation_samples"] == 25
    assert np.isnan(history.history["val_loss"]).all()
    assert np.isfinite(history.history["loss"]).all()


def test_validation_split_matches_explicit_validation_data(rng):
    x, y = blobs(rng, n=120)
    runs = []
    for kwargs in ({"validation_split": 0.25}, {"validation_data": (x[90:], y[90:])}):
        gk.manual_seed(5)
        model = mlp()
        data = (x, y) if "validation_split" in kwargs else (x[:90], y[:90])
        runs.append((make_trainer(model).fit(*data, epochs=2, batch_size=16, verbose=0, **kwargs), weights(model)))
    assert runs[0][0].history == runs[1][0].history
    assert_same_state(runs[0][1], runs[1][1])


def test_shuffling_is_seeded(rng):
    x, y = blobs(rng, n=200)
    states = []
    for seed in (7, 7, 8):
        gk.manual_seed(0)  # the same initial weights every time
        model = mlp()
        gk.manual_seed(seed)  # only the shuffling seed varies
        make_trainer(model).fit(x, y, epochs=2, batch_size=10, verbose=0)
        states.append(weights(model))
    assert_same_state(states[0], states[1], "same seed")
    differs = any(np.any(states[0][k] != states[2][k]) for k in states[0])
    assert differs, "a different seed must shuffle differently"


def test_no_shuffle_uses_the_given_order(rng):
    x, y = blobs(rng, n=64)
    results = []
    for seed in (1, 2):
        gk.manual_seed(0)
        model = mlp()
        gk.manual_seed(seed)
        make_trainer(model).fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        results.append(weights(model))
    assert_same_state(results[0], results[1], "shuffle=False")


# -- schedulers and clipping ---------------------------------------------------------------
def test_scheduler_steps_once_per_epoch(rng):
    x, y = blobs(rng, n=64)
    model = mlp()
    opt = gk.optim.SGD(model.parameters(), lr=0.1)
    sched = gk.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    history = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched).fit(x, y, epochs=3, verbose=0)
    np.testing.assert_allclose(history.history["lr"], [0.1, 0.05, 0.025])
    np.testing.assert_allclose(opt.param_groups[0]["lr"], 0.0125)


def test_reduce_on_plateau_is_stepped_with_the_loss(rng):
    x, y = blobs(rng, n=64)
    model = mlp()
    opt = gk.optim.SGD(model.parameters(), lr=1e-6)  # too small to improve by the 1e-4 threshold
    sched = gk.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    history = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched).fit(
        x, y, epochs=3, validation_data=(x, y), verbose=0)
    np.testing.assert_allclose(history.history["lr"], [1e-6, 1e-6, 5e-7])


def test_one_cycle_steps_per_batch(rng):
    x, y = blobs(rng, n=64)
    model = mlp()
    opt = gk.optim.SGD(model.parameters(), lr=0.01)
    sched = gk.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=8)
    first_lr = opt.param_groups[0]["lr"]
    history = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched).fit(x, y, epochs=2, batch_size=16,
                                                                                 verbose=0)
    # 4 batches per epoch, 8 steps in all: the cycle ran to its end (PyTorch raises past total_steps).
    assert history.history["lr"][0] > first_lr
    assert history.history["lr"][1] < history.history["lr"][0]
    np.testing.assert_allclose(history.history["lr"][1], sched.get_last_lr()[0])


def test_clip_grad_norm_bounds_each_update(rng):
    x, y = blobs(rng, n=32)
    model = mlp()
    before = weights(model)
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=1.0), clip_grad_norm=1e-3)
    trainer.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    step = np.sqrt(sum(np.sum((model.state_dict()[k].astype(np.float64) - before[k]) ** 2) for k in before))
    assert 0 < step <= 1e-3 * (1 + 1e-4), step


# -- non-finite losses and gradients ----------------------------------------------------------
class RunningMean(nn.Module):
    """Test-local layer with a buffer updated in training forwards (like BatchNorm's running stats)."""

    def __init__(self, d):
        super().__init__()
        self.register_buffer("running_mean", np.zeros(d, np.float32))

    def forward(self, x):
        if self.training:
            self.running_mean *= 0.9
            self.running_mean += 0.1 * x.mean(axis=0)
        self._save_for_backward()
        return x

    def backward(self, dy):
        self._saved()
        return dy


class GradBomb(nn.Module):
    """Test-local identity layer with a parameter whose gradient becomes Inf on a chosen call."""

    def __init__(self, d, bomb_at):
        super().__init__()
        self.weight = nn.Parameter(np.ones(d, np.float32))
        self.calls, self.bomb_at = 0, bomb_at

    def forward(self, x):
        self._save_for_backward(x=x)
        return x * self.weight.data

    def backward(self, dy):
        x = self._saved()["x"]
        self.calls += 1
        self.weight.grad += (dy * x).sum(axis=0)
        if self.calls == self.bomb_at:
            self.weight.grad[0] = np.inf
        return dy * self.weight.data


def test_nan_loss_stops_before_updating(rng):
    x, y = blobs(rng, n=64)
    x[37] = np.inf  # in batch 5 of 8 (1-based) with batch_size 8 and no shuffling
    gk.manual_seed(9)
    model = nn.Sequential(RunningMean(8), *mlp())
    init = weights(model)
    with pytest.raises(FloatingPointError, match=r"non-finite loss.*epoch 1, batch 5 of 8") as err:
        make_trainer(model).fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert "last finite state" in str(err.value)
    # Reference: the same start trained on the four finite batches only.
    ref = nn.Sequential(RunningMean(8), *mlp())
    ref.load_state_dict(init)
    make_trainer(ref).fit(x[:32], y[:32], epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_state(weights(model), weights(ref), "after the non-finite batch")
    assert all(np.all(np.isfinite(v)) for v in weights(model).values())
    assert all(np.all(p.grad == 0) for p in model.parameters())


def test_nan_loss_names_epoch_and_batch_with_shuffle(rng):
    x, y = blobs(rng, n=40)
    x[:] = np.nan
    model = mlp()
    init = weights(model)
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at epoch 1, batch 1 of 5"):
        make_trainer(model).fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert_same_state(init, weights(model), "no update may happen")


def test_non_finite_gradient_stops_before_the_step(rng):
    x, y = blobs(rng, n=48)
    bomb = GradBomb(8, bomb_at=4)
    model = nn.Sequential(bomb, *mlp())
    trainer = make_trainer(model)
    snapshots = []

    class Recorder(gk.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            snapshots.append(weights(self.model))

    trainer.callbacks.append(Recorder())
    with pytest.raises(FloatingPointError, match=r"non-finite gradient.*epoch 1, batch 4 of 6"):
        trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert len(snapshots) == 3
    assert_same_state(snapshots[-1], weights(model), "after the non-finite gradient")


# -- inference -------------------------------------------------------------------------------------
def test_predict_is_batched_eval_mode_and_keeps_no_cache(rng):
    gk.manual_seed(10)
    x, _ = blobs(rng, n=50)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    trainer = make_trainer(model)
    a = trainer.predict(x, batch_size=7)
    b = trainer.predict(x, batch_size=1000)
    assert a.shape == (50, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    model.eval()
    with gk.no_grad():
        np.testing.assert_allclose(a, model(x), rtol=1e-5, atol=1e-6)
    model.train()
    trainer.predict(x)
    assert model.training, "predict must restore training mode"
    with pytest.raises(RuntimeError):
        model.backward(np.ones((50, 3), np.float32))
    assert trainer.predict(x[:0]).shape[0] == 0


def test_evaluate_matches_a_manual_computation(rng):
    x, y = blobs(rng, n=70)
    model = mlp()
    trainer = make_trainer(model)
    result = trainer.evaluate(x, y, batch_size=16)
    logits = trainer.predict(x).astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    np.testing.assert_allclose(result["loss"], -logp[np.arange(70), y].mean(), rtol=1e-5)
    assert result["accuracy"] == np.mean(logits.argmax(1) == y)


def test_custom_metric_callable(rng):
    x, y = blobs(rng, n=64)

    def top2(out, target):
        return float(np.mean((np.argsort(out, axis=1)[:, -2:] == target[:, None]).any(axis=1)))

    history = make_trainer(mlp(), metrics=("accuracy", top2)).fit(x, y, epochs=2, verbose=0, validation_split=0.25)
    assert {"top2", "val_top2"} <= set(history.history)
    assert all(h >= a for h, a in zip(history.history["top2"], history.history["accuracy"]))


# -- output and arguments -------------------------------------------------------------------------------
def test_progress_bar_and_silence(rng, capsys):
    x, y = blobs(rng, n=64)
    trainer = make_trainer(mlp())
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=1, validation_split=0.25)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "loss=" in err and "samples/s" in err and "val_loss=" in err
    trainer.fit(x, y, epochs=1, batch_size=16, verbose=2)
    line = capsys.readouterr().out
    assert line.startswith("Epoch 1/1") and "samples/s" in line and "accuracy=" in line


def test_callback_hooks_and_stop_training(rng):
    x, y = blobs(rng, n=40)
    events = []

    class Spy(gk.callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(("epoch_begin", epoch))

        def on_batch_end(self, batch, logs=None):
            events.append(("batch", batch, round(logs["loss"], 6) > 0))

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch_end", epoch, sorted(logs)))
            if epoch == 1:
                self.trainer.stop_training = True

        def on_train_end(self, logs=None):
            events.append("train_end")

    trainer = make_trainer(mlp(), callbacks=[Spy()])
    history = trainer.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.epoch == [0, 1]
    assert events == ["train_begin",
                      ("epoch_begin", 0), ("batch", 0, True), ("batch", 1, True), ("batch", 2, True),
                      ("epoch_end", 0, ["accuracy", "loss", "lr"]),
                      ("epoch_begin", 1), ("batch", 0, True), ("batch", 1, True), ("batch", 2, True),
                      ("epoch_end", 1, ["accuracy", "loss", "lr"]),
                      "train_end"]


def test_bad_arguments(rng):
    x, y = blobs(rng, n=20)
    model = mlp()
    trainer = make_trainer(model)
    with pytest.raises(TypeError, match="model"):
        gk.Trainer(object(), nn.CrossEntropyLoss(), trainer.optimizer)
    with pytest.raises(TypeError, match="loss"):
        gk.Trainer(model, "ce", trainer.optimizer)
    with pytest.raises(TypeError, match="optimizer"):
        gk.Trainer(model, nn.CrossEntropyLoss(), None)
    with pytest.raises(ValueError, match="metrics"):
        make_trainer(model, metrics=("f1",))
    with pytest.raises(TypeError, match="callbacks"):
        make_trainer(model, callbacks=[lambda: None])
    with pytest.raises(ValueError, match="clip_grad_norm"):
        make_trainer(model, clip_grad_norm=0.0)
    with pytest.raises(TypeError, match=r"x: expected dtype float32.*got float64"):
        trainer.fit(x.astype(np.float64), y, verbose=0)
    with pytest.raises(ValueError, match=r"y: expected 20 targets"):
        trainer.fit(x, y[:-1], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        trainer.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        trainer.fit(x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        trainer.fit(x[:1], y[:1], validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        trainer.fit(x, y, validation_data=x, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        trainer.fit(x, y, verbose=3)
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        trainer.predict([[1.0] * 8])
    with pytest.raises(ValueError, match="at least one sample"):
        trainer.evaluate(x[:0], y[:0])


# -- issue 25: refused before anything changes, and errors that say what and where ------------------
def optimizer_state(opt):
    """The optimizer's state dict with arrays as bytes (for bit comparisons)."""
    sd = opt.state_dict()
    return {"groups": repr(sd["param_groups"]),
            "state": {i: {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
                      for i, st in sd["state"].items()}}


@pytest.mark.parametrize("make_opt", [
    lambda ps: gk.optim.SGD(ps, lr=1e40),
    lambda ps: gk.optim.SGD(ps, lr=1e40, momentum=0.9),
    lambda ps: gk.optim.Adam(ps, lr=1e38),
    lambda ps: gk.optim.RMSprop(ps, lr=1e38),
], ids=["SGD", "SGD momentum", "Adam", "RMSprop"])
def test_update_that_overflows_is_undone(rng, make_opt):
    """Issue 25 item 8: finite gradients, an update that makes weights inf/NaN: FloatingPointError,
    and the promise holds: the model keeps its state from before the step (a first step is undone
    in the optimizer too: the state it created is removed)."""
    x, y = blobs(rng, n=40)
    gk.manual_seed(5)
    model = nn.Sequential(RunningMean(8), *mlp())
    opt = make_opt(model.parameters())
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt)
    init, opt_init = weights(model), optimizer_state(opt)
    with pytest.raises(FloatingPointError, match=r"non-finite parameters after the update.*epoch 1, batch 1 of 5"
                                                 r".*last finite state"):
        trainer.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_state(weights(model), init, "after the undone update")
    assert optimizer_state(opt) == opt_init
    assert all(np.all(p.grad == 0) for p in model.parameters())
    # The optimizer still works after the undo: a sane lr trains on from the same state.
    for group in opt.param_groups:
        group["lr"] = 1e-3
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    trained = weights(model)
    assert all(np.all(np.isfinite(v)) for v in trained.values())
    # A later step overflows (the optimizer has state): the model is back bit for bit, the state finite.
    for group in opt.param_groups:
        group["lr"] = 1e300  # beyond float32 whatever the rule's scale of the step
    with pytest.raises(FloatingPointError, match=r"non-finite parameters after the update"):
        trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert_same_state(weights(model), trained, "after an undone later update")
    assert all(np.all(np.isfinite(v)) for st in opt.state.values() for v in st.values())


@pytest.mark.parametrize("name, kwargs", [("SGD", dict(lr=float("inf"))), ("Adam", dict(lr=float("inf"))),
                                          ("SGD", dict(lr=1.0, weight_decay=float("inf"))),
                                          ("RMSprop", dict(lr=float("inf"))), ("Adagrad", dict(lr=-float("inf")))])
def test_optimizers_refuse_infinite_hyperparameters(name, kwargs):
    with pytest.raises(ValueError, match=rf"{name}: (lr|weight_decay): expected a finite number, got -?inf"):
        getattr(gk.optim, name)(mlp().parameters(), **kwargs)


def test_default_metrics_are_accuracy_only_for_classification(rng):
    """Issue 25 item 11: MSELoss regression reports no accuracy unless asked; cross-entropy still does."""
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = rng.normal(size=(64, 3)).astype(np.float32) * 100
    model = mlp()
    regress = gk.Trainer(model, nn.MSELoss(), gk.optim.SGD(model.parameters(), lr=1e-4))
    assert regress.metrics == ()
    history = regress.fit(x, y, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "lr"}
    assert set(regress.evaluate(x, y)) == {"loss"}
    asked = gk.Trainer(model, nn.MSELoss(), gk.optim.SGD(model.parameters(), lr=1e-4), metrics=("accuracy",))
    assert asked.metrics == ("accuracy",)
    assert make_trainer(mlp()).metrics == ("accuracy",)


def test_optimizer_over_another_models_parameters_is_refused():
    model, other = mlp(), mlp()
    with pytest.raises(ValueError, match=r"Trainer: optimizer: expected an optimizer over the model's parameters"):
        gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(other.parameters()))
    with pytest.raises(TypeError, match=r"Trainer: optimizer: expected a gk.optim optimizer instance.*the class Adam"):
        gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam)
    # A part of the model's parameters (a frozen body) is fine.
    gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model[2].parameters()))


@pytest.mark.parametrize("shuffle", [False, True])
def test_bad_label_names_the_sample_epoch_and_batch(rng, shuffle):
    x, y = blobs(rng, n=40)
    y[27] = 7  # 3 classes
    with pytest.raises(ValueError, match=r"Trainer.fit: y\[27\] = 7 \(sample 27, epoch 1, batch \d of 5\).*"
                                         r"class indices in \[0, 3\)") as err:
        make_trainer(mlp()).fit(x, y, epochs=1, batch_size=8, shuffle=shuffle, verbose=0)
    if not shuffle:
        assert "batch 4 of 5" in str(err.value)


def test_one_sample_last_batch_into_batchnorm_names_the_layer_and_drop_last_skips_it(rng):
    x, y = blobs(rng, n=33)
    gk.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    init = weights(model)
    with pytest.raises(ValueError, match=r"epoch 1, batch 5 of 5 \(1-based; sample 32\) in layer '1': "
                                         r"BatchNorm1d\(16\): input: Expected more than 1 value per channel when training.*"
                                         r"drop_last=True"):
        make_trainer(model).fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    # drop_last: the same as training on the first 32 samples.
    model.load_state_dict(init)
    history = make_trainer(model).fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, drop_last=True)
    assert history.params["steps"] == 4
    ref = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    ref.load_state_dict(init)
    make_trainer(ref).fit(x[:32], y[:32], epochs=2, batch_size=8, shuffle=False, verbose=0)
    assert_same_state(weights(model), weights(ref), "drop_last")
    gk.manual_seed(3)
    shuffled = make_trainer(model).fit(x, y, epochs=3, batch_size=8, verbose=0, drop_last=True)  # never one sample
    assert len(shuffled.history["loss"]) == 3
    with pytest.raises(TypeError, match="drop_last: expected True or False, got 'yes'"):
        make_trainer(model).fit(x, y, drop_last="yes", verbose=0)
    with pytest.raises(ValueError, match="drop_last: expected batch_size <= the training samples"):
        make_trainer(model).fit(x, y, batch_size=64, drop_last=True, verbose=0)


def test_predict_without_a_batch_axis_says_so(rng):
    x, y = blobs(rng, n=10)
    trainer = make_trainer(mlp())
    with pytest.raises(ValueError, match=r"Trainer.predict: x: expected a batch of samples \(N, ...\).*shape \(8,\).*"
                                         r"x\[None\]"):
        trainer.predict(x[0])
    with pytest.raises(ValueError, match=r"Trainer.evaluate: x: expected a batch of samples"):
        trainer.evaluate(x[0], y[:8])
    assert trainer.predict(x[0][None]).shape == (1, 3)


def test_callbacks_and_metrics_arguments(rng):
    x, y = blobs(rng, n=24)
    model = mlp()
    assert make_trainer(model, callbacks=None).callbacks == []
    stopper = gk.callbacks.EarlyStopping(monitor="loss")
    assert make_trainer(model, callbacks=stopper).callbacks == [stopper]  # one callback, not in a list
    assert make_trainer(model, metrics=None).metrics == ()
    with pytest.raises(TypeError, match=r"callbacks: expected a list of gk.callbacks.Callback instances.*got int"):
        make_trainer(model, callbacks=3)
    with pytest.raises(TypeError, match=r"callbacks: expected gk.callbacks.Callback instances, got the class EarlyStopping"):
        make_trainer(model, callbacks=[gk.callbacks.EarlyStopping])
    with pytest.raises(TypeError, match=r"metrics: expected a list of names or callables \(or None\), got int"):
        make_trainer(model, metrics=3)
    with pytest.raises(TypeError, match=r"loss: expected a loss instance.*the class CrossEntropyLoss itself"):
        gk.Trainer(model, nn.CrossEntropyLoss, gk.optim.Adam(model.parameters()))

    def per_sample(out, target):
        return out.argmax(axis=1) == target

    with pytest.raises(TypeError, match=r"metrics: the metric 'per_sample' must return the batch mean as one number, "
                                        r"got shape \(8,\)"):
        make_trainer(model, metrics=(per_sample,)).fit(x, y, batch_size=8, verbose=0)
