"""gk.callbacks: EarlyStopping, ModelCheckpoint (save / resume), History.plot."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn


def problem(rng, n=160, d=6):
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def mlp(d=6):
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def make_trainer(model, callbacks=(), lr=0.05, scheduler=None):
    opt = gk.optim.Adam(model.parameters(), lr=lr)
    if scheduler is not None:
        scheduler = scheduler(opt)
    return gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=scheduler, callbacks=callbacks)


def weights(model):
    return model.state_dict()


def assert_same_state(a, b, what="state"):
    assert a.keys() == b.keys()
    for k in a:
        diff = np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)), initial=0.0)
        assert diff == 0.0, f"{what}: {k} differs by {diff:.3e}"


class Recorder(gk.callbacks.Callback):
    """Keeps the weights after every epoch (listed before the callback under test)."""

    def __init__(self):
        super().__init__()
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(weights(self.model))


# -- EarlyStopping -------------------------------------------------------------------------
def test_early_stopping_stops_and_restores_best_weights(rng):
    gk.manual_seed(0)
    x, y = problem(rng)
    # Validation labels are flipped: the better the model learns, the worse val_loss gets,
    # so the best epoch is the first one.
    recorder = Recorder()
    stopper = gk.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    history = make_trainer(mlp(), [recorder, stopper]).fit(
        x, y, epochs=20, batch_size=16, validation_data=(x, 1 - y), verbose=0)
    val = history.history["val_loss"]
    assert history.epoch == [0, 1, 2], val
    assert val[1] > val[0] and val[2] > val[0]
    assert stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    assert_same_state(weights(stopper.model), recorder.states[0], "restored weights")


def test_early_stopping_without_restore_keeps_last_weights(rng):
    gk.manual_seed(1)
    x, y = problem(rng)
    recorder = Recorder()
    stopper = gk.callbacks.EarlyStopping(patience=0)
    make_trainer(mlp(), [recorder, stopper]).fit(x, y, epochs=20, batch_size=16, validation_data=(x, 1 - y),
                                                  verbose=0)
    assert len(recorder.states) == 2
    assert_same_state(weights(stopper.model), recorder.states[-1], "last weights")


def test_early_stopping_mode_and_min_delta(rng):
    gk.manual_seed(2)
    x, y = problem(rng)
    # accuracy -> mode max (auto); a huge min_delta means nothing ever counts as an improvement.
    stopper = gk.callbacks.EarlyStopping(monitor="accuracy", min_delta=10.0, patience=3)
    assert stopper.mode == "max"
    history = make_trainer(mlp(), [stopper]).fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.epoch == [0, 1, 2, 3]
    # A patient monitor on an improving training loss runs every epoch.
    stopper = gk.callbacks.EarlyStopping(monitor="loss", patience=5)
    assert stopper.mode == "min"
    history = make_trainer(mlp(), [stopper], lr=0.01).fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.epoch == [0, 1, 2, 3] and stopper.stopped_epoch == 0


def test_early_stopping_errors(rng):
    x, y = problem(rng, n=32)
    with pytest.raises(ValueError, match="validation_data or validation_split"):
        make_trainer(mlp(), [gk.callbacks.EarlyStopping()]).fit(x, y, epochs=2, verbose=0)
    with pytest.raises(ValueError, match="mode"):
        gk.callbacks.EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        gk.callbacks.EarlyStopping(patience=-1)


# -- ModelCheckpoint -----------------------------------------------------------------------------
def test_checkpoint_every_epoch_with_formatted_names(rng, tmp_path):
    gk.manual_seed(3)
    x, y = problem(rng)
    path = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.4f}.gk")
    trainer = make_trainer(mlp(), [gk.callbacks.ModelCheckpoint(path)])
    history = trainer.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, verbose=0)
    names = sorted(os.listdir(tmp_path / "ckpt"))
    expected = sorted(f"model-{e + 1:02d}-{v:.4f}.gk" for e, v in enumerate(history.history["val_loss"]))
    assert names == expected
    state = gk.load(str(tmp_path / "ckpt" / names[-1]))
    assert int(state["epoch"]) == 3
    assert_same_state(state["model"], weights(trainer.model), "saved model")
    assert "optimizer" in state and "rng" in state


def test_checkpoint_save_best_only(rng, tmp_path):
    gk.manual_seed(4)
    x, y = problem(rng)
    path = str(tmp_path / "best-{epoch}.gk")
    recorder = Recorder()
    checkpoint = gk.callbacks.ModelCheckpoint(path, save_best_only=True)
    make_trainer(mlp(), [recorder, checkpoint]).fit(x, y, epochs=3, batch_size=16, validation_data=(x, 1 - y),
                                                    verbose=0)
    assert os.listdir(tmp_path) == ["best-1.gk"]  # val_loss only gets worse after epoch 1
    assert_same_state(gk.load(path.format(epoch=1))["model"], recorder.states[0], "best checkpoint")
    with pytest.raises(ValueError, match="val_loss"):
        make_trainer(mlp(), [gk.callbacks.ModelCheckpoint(path, save_best_only=True)]).fit(x, y, verbose=0)


@pytest.mark.parametrize("with_scheduler", [False, True])
def test_checkpoint_resume_continues_identically(rng, tmp_path, with_scheduler):
    x, y = problem(rng)
    sched = (lambda opt: gk.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)) if with_scheduler else None
    # Run A: four epochs in one go (Dropout and shuffling draw from the generator).
    gk.manual_seed(5)
    a = mlp()
    path = str(tmp_path / "a-{epoch}.gk")
    hist_a = make_trainer(a, [gk.callbacks.ModelCheckpoint(path)], scheduler=sched).fit(
        x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0)
    # Run B: a different start and generator state, resumed from A's epoch-2 checkpoint.
    gk.manual_seed(99)
    b = mlp()
    trainer_b = make_trainer(b, scheduler=sched)
    start = trainer_b.load_checkpoint(path.format(epoch=2))
    assert start == 2
    hist_b = trainer_b.fit(x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0, initial_epoch=start)
    assert hist_b.epoch == [2, 3]
    assert_same_state(weights(b), weights(a), "resumed run")
    for key in hist_a.history:
        assert hist_b.history[key] == hist_a.history[key][2:], key


def test_load_checkpoint_rejects_other_files(tmp_path):
    gk.save({"weights": np.zeros(3, np.float32)}, str(tmp_path / "x.gk"))
    with pytest.raises(ValueError, match="not a checkpoint"):
        make_trainer(mlp()).load_checkpoint(str(tmp_path / "x.gk"))


# -- History.plot ---------------------------------------------------------------------------------------
def test_history_plot_writes_png(rng, tmp_path):
    pytest.importorskip("matplotlib")
    x, y = problem(rng, n=64)
    sched = lambda opt: gk.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    history = make_trainer(mlp(), scheduler=sched).fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    out = history.plot(tmp_path / "curves.png")
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="not recorded"):
        history.plot(tmp_path / "x.png", metrics=["f1"])


def test_history_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    history = gk.train.History()
    history.append(0, {"loss": 1.0, "lr": 0.1}, 1.0)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'gradkit\[plot\]'"):
        history.plot(tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
