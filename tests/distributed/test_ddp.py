"""DistributedDataParallel and Trainer over ranks (derived-backward models too): N ranks with batches of b train as one process with
batches of N * b; every rank holds the same bits after every step; only rank 0 writes."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import functional as F
from dist_helpers import same_on_every_rank
from nn_helpers import assert_close

pytest.importorskip("mpi4py")
DDP = gk.distributed.DistributedDataParallel


def images(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(dtype)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:, :4].sum(axis=(1, 2)) > 0)
    return x, y


def cnn(batch_norm=False, dtype=np.float64):
    norm = [nn.BatchNorm2d(4)] if batch_norm else []
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), *norm, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)


def residual():
    """Nested Sequentials: the inner one reports its layers, the outer one the whole block."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 3))


class TwoLinear(nn.Module):
    """A model outside Sequential: its gradients are reduced after the whole backward."""

    def __init__(self):
        super().__init__()
        self.flatten, self.a, self.b = nn.Flatten(), nn.Linear(64, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(self.a(self.flatten(x)))

    def backward(self, dy):
        return self.flatten.backward(self.a.backward(self.b.backward(dy)))


class Branches(nn.Module):
    """A residual join, a concatenation and a shared Linear called twice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(64 + 8, 3)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.max_pool2d(F.add(h, self.body(h)), 2)
        g = self.shared(F.tanh(self.shared(F.global_avg_pool2d(F.cat([h, h])))))
        return self.head(F.cat([F.flatten(h), g]))


def fit(model, x, y, batch_size, epochs=2, callbacks=(), **fit_args):
    gk.manual_seed(7)  # the same permutations in both runs
    trainer = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.Adam(model.parameters(), lr=1e-2),
                         callbacks=callbacks)
    history = trainer.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, **fit_args)
    return trainer, history


@pytest.mark.parametrize("build, bucket_cap_mb", [(cnn, 25), (cnn, 1e-3), (residual, 1e-4), (TwoLinear, 25),
                                                  (Branches, 25), (Branches, 1e-4)])
def test_ranks_with_batches_of_b_match_one_process_with_batches_of_world_b(world, build, bucket_cap_mb):
    rank, size, comm = world
    b = 6
    x, y = images(size * b * 5)
    gk.manual_seed(1)
    single = build().to(np.float64)
    gk.manual_seed(1)
    model = build().to(np.float64)
    _, expected = fit(single, x, y, batch_size=size * b)
    _, got = fit(DDP(model, bucket_cap_mb=bucket_cap_mb), x, y, batch_size=b)
    for (name, p), q in zip(single.named_parameters(), model.parameters()):
        assert_close(q.data, p.data, np.float64, what=name, scale=100)
    for key in expected.history:
        assert_close(got.history[key], expected.history[key], np.float64, what=key, scale=100)


def test_sync_batchnorm_model_matches_one_process_batch_norm(world):
    rank, size, comm = world
    b = 5
    x, y = images(size * b * 4, seed=1)
    gk.manual_seed(2)
    single = cnn(batch_norm=True)
    gk.manual_seed(2)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(cnn(batch_norm=True))
    assert isinstance(model[1], nn.SyncBatchNorm)
    _, expected = fit(single, x, y, batch_size=size * b)
    _, got = fit(DDP(model), x, y, batch_size=b)
    for (name, p), (_, q) in zip(single.state_dict().items(), model.state_dict().items()):
        assert_close(q, p, np.float64, what=name, scale=100)
    assert_close(got.history["loss"], expected.history["loss"], np.float64, what="loss", scale=100)


class Identical(gk.callbacks.Callback):
    """After every step: parameters (and their gradients) are the same bits on every rank."""

    def __init__(self, comm):
        super().__init__()
        self.comm, self.steps = comm, 0

    def on_batch_end(self, batch, logs=None):
        params = self.model.parameters()
        same_on_every_rank(self.comm, [p.data for p in params] + [p.grad for p in params], f"step {self.steps}")
        self.steps += 1


@pytest.mark.parametrize("bucket_cap_mb", [25, 1e-3])
def test_every_rank_holds_the_same_bits_after_every_step(world, bucket_cap_mb):
    rank, size, comm = world
    gk.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    if rank == 1:  # a different start on rank 1: the wrapper copies rank 0's
        model[0].weight.data += 1
    x, y = images(83, seed=rank, dtype=np.float32)  # different data per rank: only the averaging agrees
    check = Identical(comm)
    fit(DDP(model, bucket_cap_mb=bucket_cap_mb), x, y, batch_size=8, callbacks=[check])
    assert check.steps == 2 * -(-(-(-83 // size)) // 8)


def test_buckets_start_reducing_before_the_backward_ends(world):
    gk.manual_seed(4)
    model = cnn(dtype=np.float32)
    ddp = DDP(model, bucket_cap_mb=1e-4)
    events = []
    start, first_backward = ddp._start, model[0].backward_maybe_input
    ddp._start = lambda bucket: (events.append("start"), start(bucket))
    model[0].backward_maybe_input = lambda *a: (events.append("conv1"), first_backward(*a))[1]
    x, y = images(8, dtype=np.float32)
    loss = nn.CrossEntropyLoss()
    loss.forward(ddp(x), y)
    ddp.backward(loss.backward(), input_grad=False)
    assert len(ddp._buckets) >= 3
    assert events.index("conv1") >= 2, f"buckets started only after the first layer's backward: {events}"
    assert events.count("start") == len(ddp._buckets)


def test_grads_rebound_after_wrapping_are_rebucketed(world):
    rank, size, comm = world
    gk.manual_seed(5)
    model = cnn(dtype=np.float32)
    ddp = DDP(model)
    ddp.to(np.float64)  # new grad arrays
    x, y = images(4, seed=rank)
    loss = nn.CrossEntropyLoss()
    loss.forward(ddp(x), y)
    ddp.zero_grad()
    ddp.backward(loss.backward())
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    same_on_every_rank(comm, [p.grad for p in model.parameters()], "grads")
    assert any(np.any(p.grad != 0) for p in model.parameters())


def test_evaluate_is_sharded_and_summed(world):
    rank, size, comm = world
    gk.manual_seed(6)
    model = cnn()
    plain = gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1))
    x, y = images(size + 3)  # uneven parts
    expected = plain.evaluate(x, y, batch_size=2)
    got = gk.Trainer(DDP(model), nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1)).evaluate(
        x, y, batch_size=2)
    for key in expected:
        assert_close(got[key], expected[key], np.float64, what=key)


def test_uneven_data_pads_so_every_rank_runs_the_same_batches_and_logs_agree(world, tmp_path):
    rank, size, comm = world
    gk.manual_seed(7)
    model = DDP(cnn(dtype=np.float32))
    ckpt = gk.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch}.npz", monitor="val_loss")
    stop = gk.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    x, y = images(41, seed=8, dtype=np.float32)
    _, history = fit(model, x, y, batch_size=4, epochs=5, validation_split=0.25, callbacks=[ckpt, stop])
    assert history.params["steps"] == -(-(-(-30 // size)) // 4)
    values = [np.array(v) for v in history.history.values()]
    same_on_every_rank(comm, values, "history")
    assert len(history.epoch) == 2  # stopped identically everywhere (min_delta too big to improve)
    saved = sorted(path.name for path in tmp_path.glob("ckpt-*.npz"))  # each rank has its own tmp_path
    assert saved == (["ckpt-1.npz", "ckpt-2.npz"] if rank == 0 else []), saved
    curves = history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").exists() == (rank == 0), curves


def test_different_models_raise_on_every_rank(two_ranks):
    rank, size, comm = two_ranks
    model = nn.Sequential(nn.Linear(4, 3 + rank), nn.ReLU())
    with pytest.raises(ValueError, match=r"rank 1 has a different model than rank 0: parameter '0.weight' has "
                                         r"shape \(3, 4\)"):
        DDP(model)
    model = nn.Sequential(nn.Linear(4, 3), *([nn.Linear(3, 3)] if rank else []))
    with pytest.raises(ValueError, match="2 parameters and buffers on rank 0, 4 there"):
        DDP(model)


def test_bad_arguments(world):
    with pytest.raises(TypeError, match="model: expected a gk.nn.Module, got list"):
        DDP([])
    with pytest.raises(ValueError, match="bucket_cap_mb: expected a value > 0, got 0"):
        DDP(nn.Linear(2, 2), bucket_cap_mb=0)
    with pytest.raises(TypeError, match="bucket_cap_mb: expected a real number, got str"):
        DDP(nn.Linear(2, 2), bucket_cap_mb="25")
