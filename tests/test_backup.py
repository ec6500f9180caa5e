"""gk.callbacks.BackupAndRestore: a fit that is interrupted and started again ends bit-identical.

In-process tests interrupt fit with an exception at a chosen batch; the subprocess tests
kill tests/backup_child.py with SIGKILL at random moments, at known phases (mid-epoch, in
the middle of writing a backup) and start it again until it completes.
"""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, nn
from backup_helpers import Interrupt, Interrupted


def make_run(tmp_path, save_freq="epoch", at=None, double_checkpoint=False, scheduler="plateau", backup="bk"):
    """The same script every time: seed, data, model, optimizer, scheduler and callbacks."""
    gk.manual_seed(11)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)
    y[rng.random(len(y)) < 0.2] ^= 1
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = gk.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-3)
    if scheduler == "plateau":
        sched = gk.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=0.02)
    else:
        sched = gk.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=7 * 8)
    callbacks = {
        "backup": gk.callbacks.BackupAndRestore(tmp_path / backup, save_freq=save_freq,
                                                double_checkpoint=double_checkpoint),
        "interrupt": Interrupt(at),
        "stopper": gk.callbacks.EarlyStopping(patience=1, min_delta=0.01, restore_best_weights=True),
        "checkpoint": gk.callbacks.ModelCheckpoint(tmp_path / "best.gk", save_best_only=True),
    }
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched, callbacks=list(callbacks.values()))

    def fit(**kwargs):
        return trainer.fit(x, y, **{"epochs": 7, "batch_size": 16, "validation_split": 0.2, "verbose": 0, **kwargs})

    return trainer, callbacks, fit


def outcome(trainer, callbacks, history):
    return {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(), "history": history.history, "epochs": history.epoch,
            "stopper": callbacks["stopper"].state_dict(), "checkpoint": callbacks["checkpoint"].best,
            "rng": list(_core.rng_state())}


def assert_bits_equal(a, b, where="state"):
    """Same nesting, same types, arrays with the same dtype, shape and bytes."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_bits_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_bits_equal(u, v, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a!r} vs {b!r}"
        diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)
        assert a.tobytes() == b.tobytes(), f"{where}: arrays differ (max difference {diff:.3e})"
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} != {b!r}"


@pytest.fixture
def reference(tmp_path):
    """The uninterrupted run's final state, per (save_freq, scheduler)."""
    cache = {}

    def get(save_freq, scheduler="plateau"):
        key = (save_freq, scheduler)
        if key not in cache:
            trainer, cbs, fit = make_run(tmp_path, save_freq, scheduler=scheduler, backup=f"ref-{len(cache)}")
            cache[key] = outcome(trainer, cbs, fit())
        return cache[key]

    return get


# -- in-process: interrupt by an exception, start again with fresh objects -------------------------
@pytest.mark.parametrize("save_freq, scheduler, stops", [
    ("epoch", "plateau", [(2, 3)]),             # resumes at the start of epoch 2
    (5, "onecycle", [(0, 6), (1, 3)]),          # mid-epoch resumes, a per-batch scheduler
    (1, "plateau", [(0, 0), (3, 7), (4, 2)]),   # several interruptions, one at an epoch's last batch
    (3, "onecycle", [(0, 1)]),                  # before the first backup: starts over
])
def test_interrupted_fit_resumes_bit_identical(tmp_path, reference, save_freq, scheduler, stops):
    expected = reference(save_freq, scheduler)
    for at in stops:
        trainer, cbs, fit = make_run(tmp_path, save_freq, at=at, scheduler=scheduler)
        with pytest.raises(Interrupted):
            fit()
    trainer, cbs, fit = make_run(tmp_path, save_freq, scheduler=scheduler)
    history = fit()
    assert_bits_equal(outcome(trainer, cbs, history), expected)
    batches_total = 8 * len(expected["epochs"])
    if stops != [(0, 1)]:
        assert cbs["interrupt"].batches < batches_total  # it did resume, not start over
    assert not (tmp_path / "bk").exists()  # deleted when training completed


def test_stopped_run_killed_before_the_end_does_not_train_again(tmp_path, reference):
    """EarlyStopping stopped the run; the last backup says so; the restart only finishes it."""
    expected = reference("epoch")
    assert expected["stopper"]["stopped_epoch"] > 0, "the setup should stop early"
    trainer, cbs, fit = make_run(tmp_path, "epoch")

    def crash(logs=None):
        raise Interrupted

    cbs["stopper"].on_train_end = crash  # fails after the last backup, before restoring the best weights
    with pytest.raises(Interrupted):
        fit()
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    history = fit()
    assert cbs["interrupt"].batches == 0
    assert_bits_equal(outcome(trainer, cbs, history), expected)


def test_backup_kept_on_error_and_with_delete_checkpoint_false(tmp_path):
    trainer, cbs, fit = make_run(tmp_path, 4, at=(1, 2))
    with pytest.raises(Interrupted):
        fit()
    assert sorted(os.listdir(tmp_path / "bk")) == ["backup.npz"]
    trainer, cbs, fit = make_run(tmp_path, 4)
    cbs["backup"].delete_checkpoint = False
    fit()
    assert sorted(os.listdir(tmp_path / "bk")) == ["backup.npz"]


def test_callback_is_moved_after_the_others(tmp_path):
    trainer, cbs, fit = make_run(tmp_path)
    assert trainer.callbacks[-1] is cbs["backup"]
    assert trainer.callbacks[:-1] == [cbs["interrupt"], cbs["stopper"], cbs["checkpoint"]]


# -- atomicity and validation on load -------------------------------------------------------------------
def interrupted_twice(tmp_path, double_checkpoint):
    """Two epoch backups on disk (latest and, with double_checkpoint, the previous one)."""
    _, _, fit = make_run(tmp_path, "epoch", at=(2, 1), double_checkpoint=double_checkpoint)
    with pytest.raises(Interrupted):
        fit()


def truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def test_half_written_temp_file_is_ignored_and_removed(tmp_path, reference):
    expected = reference("epoch")
    interrupted_twice(tmp_path, False)
    temp = tmp_path / "bk" / ".backup.npz.0123456789abcdef.tmp"
    temp.write_bytes((tmp_path / "bk" / "backup.npz").read_bytes()[:1000])  # what a kill mid-write leaves
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    history = fit()
    assert not temp.exists()
    assert_bits_equal(outcome(trainer, cbs, history), expected)


def test_corrupt_latest_backup_falls_back_to_the_previous(tmp_path, reference):
    expected = reference("epoch")
    interrupted_twice(tmp_path, True)
    assert sorted(os.listdir(tmp_path / "bk")) == ["backup.npz", "backup.prev.npz"]
    truncate(tmp_path / "bk" / "backup.npz")
    trainer, cbs, fit = make_run(tmp_path, "epoch", double_checkpoint=True)
    with pytest.warns(RuntimeWarning, match="previous backup .*backup.prev.npz"):
        history = fit()
    assert_bits_equal(outcome(trainer, cbs, history), expected)
    assert cbs["interrupt"].batches == 8 * (len(expected["epochs"]) - 1)  # resumed after epoch 0, not 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other npz", "wrong format"])
def test_unreadable_backup_raises_naming_the_file(tmp_path, damage):
    interrupted_twice(tmp_path, False)
    path = tmp_path / "bk" / "backup.npz"
    if damage == "truncate":
        truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other npz":
        gk.save({"model": {}}, path)
    else:
        state = gk.load(path)
        state["format"] = "gradkit-backup-0"
        gk.save(state, path)
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    weights = trainer.model.state_dict()
    with pytest.raises(ValueError, match=r"no readable backup in .*bk.*backup\.npz"):
        fit()
    assert_bits_equal(trainer.model.state_dict(), weights)  # nothing was restored


def test_corrupt_array_bytes_are_caught_by_the_checksum(tmp_path):
    interrupted_twice(tmp_path, False)
    path = tmp_path / "bk" / "backup.npz"
    data = bytearray(path.read_bytes())
    at = data.find(b"0.weight.npy") + 200  # inside the first weight's data
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    _, _, fit = make_run(tmp_path, "epoch")
    with pytest.raises(ValueError, match="CRC"):
        fit()


def test_backup_from_another_setup_is_rejected(tmp_path):
    interrupted_twice(tmp_path, False)
    _, _, fit = make_run(tmp_path, "epoch")
    with pytest.raises(ValueError, match="batch_size"):
        fit(batch_size=15)
    trainer, cbs, _ = make_run(tmp_path, "epoch")
    other = gk.Trainer(trainer.model, nn.CrossEntropyLoss(), trainer.optimizer, scheduler=trainer.scheduler,
                       callbacks=[cbs["backup"], cbs["stopper"]])
    x = np.zeros((150, 8), np.float32)
    with pytest.raises(ValueError, match=r"callbacks \['Interrupt', 'EarlyStopping', 'ModelCheckpoint'\]"):
        other.fit(x, np.zeros(150, np.int64), epochs=7, batch_size=16, validation_split=0.2, verbose=0)
    trainer.scheduler = None
    with pytest.raises(ValueError, match="the backup has a scheduler, this fit has none"):
        trainer.fit(x, np.zeros(150, np.int64), epochs=7, batch_size=16, validation_split=0.2, verbose=0)


def backup_bytes(tmp_path):
    return {name: (tmp_path / "bk" / name).read_bytes() for name in sorted(os.listdir(tmp_path / "bk"))}


def everything(trainer):
    """Model, optimizer and scheduler state as gk.save writes them (bytes), for bit comparisons."""
    return {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict()}


@pytest.mark.parametrize("epochs", [1, 0, 9])
def test_fit_with_other_epochs_refuses_and_keeps_the_backup(tmp_path, epochs):
    """Issue 25 item 4: a fit of another length does not resume another run's backup, nor delete it."""
    interrupted_twice(tmp_path, False)
    before = backup_bytes(tmp_path)
    assert list(before) == ["backup.npz"]
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    with pytest.raises(ValueError, match=rf"belongs to another fit: epochs was 7 there, {epochs} here.*kept"):
        fit(epochs=epochs)
    assert backup_bytes(tmp_path) == before
    assert cbs["interrupt"].batches == 0


@pytest.mark.parametrize("change, match", [
    (dict(shuffle=False), "shuffle was True there, False here"),
    (dict(drop_last=True), "drop_last was False there, True here"),
    ("other data", r"training data differs \(a hash of 64 sampled rows"),
    ("one label", r"training data differs \(a hash of 64 sampled rows"),
])
def test_resume_with_other_settings_or_data_is_refused(tmp_path, change, match):
    """Issue 25 item 7: another shuffle, other data of the same size (another run of the same
    architecture), or a changed label at a sampled row: ValueError naming it, nothing restored, backup kept."""
    interrupted_twice(tmp_path, False)
    before = backup_bytes(tmp_path)
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    x, y = trainer_data()
    if change == "other data":
        x = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
        change = dict(x=x)
    elif change == "one label":
        y[0] ^= 1  # row 0 is always in the fingerprint's sample
        change = dict(y=y)
    state = everything(trainer)
    kwargs = dict(x=x, y=y, epochs=7, batch_size=16, validation_split=0.2, verbose=0)
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        trainer.fit(**kwargs)
    assert_bits_equal(everything(trainer), state)
    assert backup_bytes(tmp_path) == before


def trainer_data():
    """make_run's data (the same draws)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)
    y[rng.random(len(y)) < 0.2] ^= 1
    return x, y


@pytest.mark.parametrize("other", ["SGD", "StepLR", "wider model", "scheduler state", "callback state"])
def test_refused_restore_changes_nothing(tmp_path, other):
    """Issue 25 item 6: the whole backup is checked before anything is restored; a refused one leaves
    the model, the optimizer and the scheduler bit-identical (already trained ones, not fresh ones)."""
    interrupted_twice(tmp_path, False)
    before = backup_bytes(tmp_path)
    trainer, cbs, fit = make_run(tmp_path, "epoch")
    model, opt = trainer.model, trainer.optimizer
    if other == "SGD":
        trainer.optimizer = gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trainer.scheduler = gk.optim.lr_scheduler.ReduceLROnPlateau(trainer.optimizer, factor=0.5, patience=0)
    elif other == "StepLR":
        trainer.scheduler = gk.optim.lr_scheduler.StepLR(opt, step_size=2)
    elif other == "wider model":
        model = trainer.model = nn.Sequential(nn.Linear(8, 17), nn.BatchNorm1d(17), nn.ReLU(), nn.Dropout(0.3),
                                              nn.Linear(17, 2))
        trainer.optimizer = gk.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-3)
        trainer.scheduler = gk.optim.lr_scheduler.ReduceLROnPlateau(trainer.optimizer, factor=0.5, patience=0)
    else:  # checked after the model and the optimizer: a damaged scheduler or EarlyStopping state
        state = gk.load(tmp_path / "bk" / "backup.npz")
        if other == "scheduler state":
            state["scheduler"]["factor"] = "half"
        else:
            state["callbacks"][1][1]["wait"] = "many"
        gk.save(state, tmp_path / "bk" / "backup.npz")
        before = backup_bytes(tmp_path)
    # Give everything a state of its own first (a fresh optimizer's empty state would hide a partial restore).
    x, y = trainer_data()
    side = gk.Trainer(trainer.model, nn.CrossEntropyLoss(), trainer.optimizer, scheduler=trainer.scheduler,
                      callbacks=[])
    side.fit(x, y, epochs=2, batch_size=16, verbose=0)
    state = everything(trainer)
    stopper = cbs["stopper"].state_dict()
    with pytest.raises((ValueError, TypeError)) as err:
        fit()
    assert_bits_equal(everything(trainer), state)  # checked first: main failed here
    assert_bits_equal(cbs["stopper"].state_dict(), stopper)
    assert backup_bytes(tmp_path) == before
    assert cbs["interrupt"].batches == 0
    assert err.type is ValueError and re.search(r"BackupAndRestore: backup in .*bk.*kept", str(err.value)), err.value


def test_arguments_are_checked(tmp_path):
    for bad in (0, -3, "batch"):
        with pytest.raises(ValueError, match="save_freq"):
            gk.callbacks.BackupAndRestore(tmp_path, save_freq=bad)
    for bad in (True, 2.0, None):
        with pytest.raises(TypeError, match="BackupAndRestore: save_freq: expected an int"):
            gk.callbacks.BackupAndRestore(tmp_path, save_freq=bad)
    for bad in (None, 3, ""):
        with pytest.raises(TypeError, match="backup_dir"):
            gk.callbacks.BackupAndRestore(bad)
    assert gk.callbacks.BackupAndRestore(tmp_path, save_freq=np.int64(7)).save_freq == 7
    (tmp_path / "bk").write_text("a file")
    _, _, fit = make_run(tmp_path)
    with pytest.raises(ValueError, match="backup_dir: expected a directory, got the file"):
        fit()


def test_callback_state_protocol_round_trips(tmp_path):
    trainer, cbs, fit = make_run(tmp_path)
    fit()
    stopper = cbs["stopper"]
    gk.save(stopper.state_dict(), tmp_path / "s.gk")
    fresh = gk.callbacks.EarlyStopping(patience=1, min_delta=0.01, restore_best_weights=True)
    fresh.load_state_dict(gk.load(tmp_path / "s.gk"))
    assert_bits_equal(fresh.state_dict(), stopper.state_dict())
    assert gk.callbacks.Callback().state_dict() == {}
    with pytest.raises(TypeError, match="state: expected a dict"):
        gk.callbacks.Callback().load_state_dict([1])


# -- the real thing: SIGKILL a training process and start it again ---------------------------------
CHILD = Path(__file__).with_name("backup_child.py")
DELAY = "0.01"  # seconds slept per batch in the child, so that kills spread over the training
TRIALS = int(os.environ.get("GRADKIT_KILL_TRIALS", "2"))  # random-kill trials per save_freq (8 in docs/guide.md)


def start_child(tmp_path, save_freq, out, **env):
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_CHILD_")}
    child_env.update(PYTHONPATH=str(Path(gk.__file__).parent.parent), OMP_NUM_THREADS="1",
                     BACKUP_CHILD_DELAY=DELAY, **env)
    stderr = open(tmp_path / "child.err", "w")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path / "bk"), str(save_freq), str(out)],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env)
    stderr.close()
    return proc


def finish(proc, timeout=120):
    """Wait for the child; return its marker lines."""
    out, _ = proc.communicate(timeout=timeout)
    return out.split("\n")


def kill_on(proc, marker, count=1, then_batches=0):
    """SIGKILL right after the count-th line starting with marker (and then_batches more batches)."""
    lines, seen, after = [], 0, None
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith(marker) and after is None:
            seen += 1
            if seen == count:
                after = 0
        elif line.startswith("batch") and after is not None:
            after += 1
        if after is not None and after >= then_batches:
            proc.send_signal(signal.SIGKILL)
            break
    return lines + finish(proc)


def kill_after(proc, seconds):
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return finish(proc)


def resumed_at(lines):
    for line in lines:
        if line == "fresh":
            return None
        if line.startswith("resumed"):
            return tuple(int(v) for v in line.split()[1:])
    return "killed before fit"


def run_trial(tmp_path, save_freq, kills):
    """Start the child, kill it as each of ``kills`` says, then let it complete; returns the runs' lines.

    A run that completes before its kill ends the trial (a new run would train from the start).
    """
    out = tmp_path / "out.gk"
    runs = []
    for kill in kills + [None]:
        env = {"BACKUP_CHILD_SLOW_SAVE": "0.3"} if kill is not None and kill[0] == "in-save" else {}
        proc = start_child(tmp_path, save_freq, out, **env)
        if kill is None:
            lines = finish(proc)
        else:
            lines = kill_after(proc, kill[1]) if kill[0] == "delay" else kill_on(proc, *kill)
        runs.append(lines)
        if proc.returncode != -signal.SIGKILL:
            break
    assert proc.returncode == 0, (tmp_path / "child.err").read_text()
    assert any(line.startswith("done") for line in lines)
    assert not (tmp_path / "bk").exists(), "the backup should be deleted when training completes"
    return gk.load(out), runs


@pytest.fixture(scope="module")
def child_reference(tmp_path_factory):
    """Uninterrupted child runs: final state and wall time, per save_freq."""
    import time

    cache = {}

    def get(save_freq):
        if save_freq not in cache:
            tmp = tmp_path_factory.mktemp(f"ref-{save_freq}")
            t0 = time.perf_counter()
            proc = start_child(tmp, save_freq, tmp / "out.gk")
            lines = finish(proc)
            assert proc.returncode == 0, (tmp / "child.err").read_text()
            assert resumed_at(lines) is None
            cache[save_freq] = gk.load(tmp / "out.gk"), time.perf_counter() - t0
        return cache[save_freq]

    return get


def random_kills(seed, count, wall):
    """``count`` kills: the first 0-3 batches after the first backup (so that one kill surely lands
    after a backup), the others after random delays (import, training, validation, saving)."""
    rng = np.random.default_rng(seed)
    return [("save-end", 1, int(rng.integers(0, 4)))] + [("delay", float(rng.uniform(0.2, wall)))
                                                        for _ in range(count - 1)]


def assert_resumed_after_backups(runs):
    """Every run killed after it finished a backup was followed by a run that resumed from a backup
    (the next one that reached fit: a kill may land during the import); at least one was. A run killed
    after its fit completed ("ending": the backup is deleted then) may be followed by a fresh run."""
    after_backup = [i for i, lines in enumerate(runs[:-1]) if "save-end" in lines and "ending" not in lines]
    assert after_backup, f"no kill landed after a backup: {runs}"
    for i in after_backup:
        later = [resumed_at(lines) for lines in runs[i + 1:]]
        started = next(at for at in later if at != "killed before fit")
        assert isinstance(started, tuple), f"the run after run {i} did not resume: {later}"


needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


@needs_sigkill
@pytest.mark.parametrize("save_freq", ["epoch", 5])
def test_sigkill_at_known_phases(tmp_path, child_reference, save_freq):
    """Killed mid-epoch after a backup, then while writing a backup: resumes each time, ends bit-identical."""
    expected, _ = child_reference(save_freq)
    state, runs = run_trial(tmp_path, save_freq, [("save-end", 2, 2), ("in-save", 1)])
    assert "in-save" in runs[1] and "save-end" not in runs[1][runs[1].index("in-save"):]
    # Run 2 resumes from the second backup (or a later one if the kill came late: the machine may be
    # loaded), at an epoch start or mid-epoch; run 3 from the same one, as the write it was in was cut.
    first = resumed_at(runs[1])
    assert isinstance(first, tuple) and (first[1] == 0) == (save_freq == "epoch"), runs[1]
    assert first >= ((2, 0) if save_freq == "epoch" else (0, 10))
    assert resumed_at(runs[2]) == first
    assert_bits_equal(state, expected)


@needs_sigkill
@pytest.mark.parametrize("save_freq", ["epoch", 5])
@pytest.mark.parametrize("trial", [0, 1] + [pytest.param(t, marks=pytest.mark.slow) for t in range(2, TRIALS)])
def test_sigkill_at_random_moments(tmp_path, child_reference, save_freq, trial):
    """Two or three SIGKILLs at random moments (import, training, validation, saving), then completion."""
    expected, wall = child_reference(save_freq)
    kills = random_kills(1000 * trial + (save_freq == "epoch"), 2 + trial % 2, wall)
    state, runs = run_trial(tmp_path, save_freq, kills)
    # Where each run started and what it last did before its kill (shown with pytest -rP).
    print([(resumed_at(lines), next((x for x in reversed(lines) if x), "nothing")) for lines in runs])
    assert resumed_at(runs[0]) is None
    assert_resumed_after_backups(runs)
    assert_bits_equal(state, expected)


@needs_sigkill
def test_second_process_on_the_same_backup_dir_fails_at_once(tmp_path, child_reference):
    """Issue 25 item 5: while a training process holds backup_dir, another fit on it raises at once
    (RuntimeError naming the directory and the holder) and touches nothing; the first completes."""
    expected, _ = child_reference(5)
    out = tmp_path / "out.gk"
    proc = start_child(tmp_path, 5, out, BACKUP_CHILD_SLOW_SAVE="0.5")
    lines = []
    for line in proc.stdout:  # wait until the child is in the middle of writing a backup (its temp file exists)
        lines.append(line.strip())
        if line.startswith("in-save"):
            break
    temps = list((tmp_path / "bk").glob(".backup.npz.*.tmp"))
    assert temps, lines
    trainer, cbs, fit = make_run(tmp_path, 5)
    state = everything(trainer)
    with pytest.raises(RuntimeError, match=rf"backup_dir: .*bk.* is in use by another training process \(pid {proc.pid}"):
        fit()
    assert all(t.exists() for t in temps)  # the other process's temp file was not removed
    assert_bits_equal(everything(trainer), state)
    assert cbs["interrupt"].batches == 0
    lines += finish(proc)
    assert proc.returncode == 0, (tmp_path / "child.err").read_text()
    assert_bits_equal(gk.load(out), expected)
    assert not (tmp_path / "bk").exists()  # the child deleted its own backup (and lock file) at the end
    _, _, fit = make_run(tmp_path, 5)  # the lock is gone with it: a new fit may use the directory
    fit()
