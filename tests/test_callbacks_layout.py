"""How the callbacks, the Trainer and the data path sit together: old module paths,
``trainer.state``, ``CallbackList`` and the DataLoader's public epoch plan."""
import pickle

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.callbacks import CallbackList
from gradkit.data import ArrayDataset, DataLoader

# -- old module paths ------------------------------------------------------------------------
def _pickled_under(obj, old_module):
    """obj pickled (protocol 0, text) as if its class lived in old_module."""
    data = pickle.dumps(obj, protocol=0)
    new = f"c{type(obj).__module__}\n{type(obj).__name__}\n".encode()
    assert new in data
    return data.replace(new, f"c{old_module}\n{type(obj).__name__}\n".encode())


@pytest.mark.parametrize("make, old_module", [
    (lambda: gk.callbacks.ActivationStats(every_n_batches=3), "gradkit.diagnostics.callbacks"),
    (lambda: gk.callbacks.UpdateRatio(low=1e-5), "gradkit.diagnostics.callbacks"),
    (lambda: gk.callbacks.History(), "gradkit.train.history"),
    (lambda: gk.callbacks.EarlyStopping(patience=3), "gradkit.callbacks"),
    (lambda: gk.callbacks.ModelCheckpoint("m.npz", save_best_only=True), "gradkit.callbacks"),
    (lambda: gk.callbacks.BackupAndRestore("bk", save_freq=4), "gradkit.callbacks"),
])
def test_pickles_naming_the_old_module_paths_load(make, old_module):
    obj = make()
    obj.marker = [1, 2.5]
    assert type(obj).__module__ != old_module or old_module == "gradkit.callbacks"
    back = pickle.loads(_pickled_under(obj, old_module))
    assert type(back) is type(obj) and back.marker == [1, 2.5]
    assert vars(back).keys() == vars(obj).keys()


def test_public_names_import_from_their_documented_places():
    from gradkit.callbacks import (ActivationStats, BackupAndRestore, Callback, EarlyStopping,  # noqa: F401
                                   History, ModelCheckpoint, UpdateRatio)
    from gradkit.train import History as TrainHistory, Trainer, TrainerState  # noqa: F401

    assert TrainHistory is History and gk.Trainer is Trainer
    assert issubclass(ActivationStats, Callback) and issubclass(UpdateRatio, Callback)
    assert issubclass(BackupAndRestore, Callback) and BackupAndRestore.runs_last and not Callback.runs_last
    assert gk.distributed.all_reduce is gk._mpi.all_reduce and gk.nn.SyncBatchNorm.__module__ == "gradkit.nn.sync_batchnorm"


# -- trainer.state and CallbackList ------------------------------------------------------------
def _data(n=26, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _trainer(callbacks=()):
    gk.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    return gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1), callbacks=callbacks)


class StateRecorder(gk.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen, self.rngs, self.released = [], [], 0

    def on_epoch_begin(self, epoch, logs=None):
        state = self.trainer.state
        self.seen.append(("begin", state.epoch, state.batch, state.sums))

    def on_batch_end(self, batch, logs=None):
        state = self.trainer.state
        loss_sum, samples, (accuracy_sum,) = state.sums
        assert logs["loss"] == loss_sum / samples and logs["accuracy"] == accuracy_sum / samples
        self.seen.append(("batch", state.epoch, state.batch, samples))
        if batch == 0:
            self.rngs.append(state.epoch_rng)

    def release(self):
        self.released += 1


def test_trainer_state_tells_callbacks_where_the_fit_is():
    x, y = _data()
    recorder = StateRecorder()
    trainer = _trainer([recorder])
    gk.manual_seed(5)
    before = gk._core.rng_state()
    trainer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    epoch0 = [("begin", 0, 0, None), ("batch", 0, 1, 8), ("batch", 0, 2, 16), ("batch", 0, 3, 24),
              ("batch", 0, 4, 26)]
    assert recorder.seen == epoch0 + [(k, 1, b, s) for k, _, b, s in epoch0]
    assert recorder.rngs[0] == before  # the generator before epoch 0's shuffle
    assert recorder.rngs[1] != before and recorder.released == 1
    state = trainer.state
    assert state.setup["samples"] == 26 and state.setup["batch_size"] == 8 and state.shard is None
    assert state.resume is None and "epoch=1, batch=4" in repr(state)


def test_release_runs_when_fit_raises():
    x, y = _data()
    recorder = StateRecorder()
    trainer = _trainer([recorder])
    y_bad = y.copy()
    y_bad[3] = 7  # a label out of range
    with pytest.raises(ValueError, match=r"y\[3\] = 7"):
        trainer.fit(x, y_bad, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert recorder.released == 1


def test_callback_list_checks_orders_and_calls_only_overridden_batch_hooks():
    backup = gk.callbacks.BackupAndRestore("unused")
    stop, recorder = gk.callbacks.EarlyStopping(monitor="loss"), StateRecorder()
    assert CallbackList.checked("T", [backup, stop, recorder]) == [stop, recorder, backup]
    assert CallbackList.checked("T", stop) == [stop] and CallbackList.checked("T", None) == []
    with pytest.raises(TypeError, match=r"T: callbacks: expected gk.callbacks.Callback instances, got the class"):
        CallbackList.checked("T", [gk.callbacks.EarlyStopping])
    with pytest.raises(TypeError, match="T: callbacks: expected a list"):
        CallbackList.checked("T", "stop")
    only_epochs = CallbackList([stop])
    assert not only_epochs.wants_batch_begin and not only_epochs.wants_batch_end
    both = CallbackList([stop, recorder, gk.callbacks.UpdateRatio()])
    assert both.wants_batch_begin and both.wants_batch_end and len(both) == 3 and list(both)[1] is recorder


def test_arrays_and_a_loader_over_them_train_the_same():
    """One batch path: fit on arrays and fit on DataLoader(ArrayDataset(x, y)) give the same bits."""
    x, y = _data(n=37, seed=3)
    results = []
    for data in ((x, y), (DataLoader(ArrayDataset(x, y), batch_size=8, shuffle=True),)):
        trainer = _trainer()
        gk.manual_seed(9)
        history = trainer.fit(*data, epochs=3, batch_size=8, verbose=0)
        results.append((history.history["loss"], trainer.model.state_dict(), gk._core.rng_state()))
    (loss_a, state_a, rng_a), (loss_b, state_b, rng_b) = results
    assert loss_a == loss_b and rng_a == rng_b
    assert all(np.array_equal(state_a[k], state_b[k]) for k in state_a)
