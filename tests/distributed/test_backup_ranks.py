"""BackupAndRestore with a DistributedDataParallel model: rank 0 alone writes and reads the backup,
every rank resumes from it, and an interrupted distributed fit ends bit-identical to one that was not."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import _core, nn
from backup_helpers import Interrupt, Interrupted
from dist_helpers import same_on_every_rank

pytest.importorskip("mpi4py")
DDP = gk.distributed.DistributedDataParallel


def steps_per_epoch():
    return -(-150 // gk.distributed.world_size() // 8)


def run(backup_dir, save_freq, at=None):
    """The same script every time on every rank: seed, data, model, optimizer, scheduler, callbacks."""
    gk.manual_seed(5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] > 0).astype(np.int64)
    model = DDP(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2)))
    opt = gk.optim.Adam(model.parameters(), lr=0.02, weight_decay=1e-3)
    sched = gk.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=4 * steps_per_epoch())
    interrupt = Interrupt(at)
    callbacks = [gk.callbacks.BackupAndRestore(backup_dir, save_freq=save_freq), interrupt,
                 gk.callbacks.EarlyStopping(monitor="loss", patience=3)]
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), opt, scheduler=sched, callbacks=callbacks,
                         metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=4, batch_size=8, verbose=0)
    return trainer, history, interrupt


def outcome(trainer, history):
    arrays = [v for v in trainer.model.state_dict().values()]
    arrays += [np.asarray(v, dtype=np.float64) for v in history.history.values()]
    return arrays + [np.array(_core.rng_state(), dtype=np.uint64)]


@pytest.mark.parametrize("save_freq, stops", [
    (3, [(0, 4), (2, 7)]),  # mid-epoch backups: each rank's running sums come back to it
    ("epoch", [(1, 5)]),
])
def test_interrupted_distributed_fit_resumes_bit_identical(world, tmp_path, save_freq, stops):
    rank, size, comm = world
    # Each rank has its own tmp_path: the backup lives in rank 0's, the other ranks' stay empty.
    reference_trainer, reference_history, _ = run(tmp_path / "ref", save_freq)
    expected = outcome(reference_trainer, reference_history)
    backup = tmp_path / "bk"
    for at in stops:
        with pytest.raises(Interrupted):
            run(backup, save_freq, at=at)
        assert (backup / "backup.npz").exists() == (rank == 0)
    trainer, history, interrupt = run(backup, save_freq)
    got = outcome(trainer, history)
    assert interrupt.batches < 4 * steps_per_epoch()  # it resumed rather than starting over
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.tobytes() == b.tobytes(), f"array {i} differs from the uninterrupted run's"
    assert list(history.history) == list(reference_history.history)
    same_on_every_rank(comm, got, "resumed state")
    assert not backup.exists()  # deleted by rank 0 when training completed; never created elsewhere


def test_unreadable_backup_on_rank_0_raises_on_every_rank(world, tmp_path):
    rank, size, comm = world
    backup = tmp_path / "bk"
    if rank == 0:
        backup.mkdir()
        (backup / "backup.npz").write_bytes(b"not a backup")
    with pytest.raises(ValueError, match="no readable backup in .*backup.npz"):
        run(backup, "epoch")
    comm.Barrier()  # every rank raised (none waits in a collective)
