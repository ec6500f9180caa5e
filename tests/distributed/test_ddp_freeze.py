"""DistributedDataParallel with frozen parameters: only trainable ones are bucketed and reduced;
frozen ones keep their values and gradients bit for bit on every rank."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from dist_helpers import same_on_every_rank
from nn_helpers import assert_close

pytest.importorskip("mpi4py")
DDP = gk.distributed.DistributedDataParallel
SENTINEL = 0.375


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8))
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:, :4].sum(axis=(1, 2)) > 0)
    return x, y


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).to(np.float64)


def fit(model, x, y, batch_size, epochs=1):
    gk.manual_seed(7)  # the same permutations in both runs
    params = model.parameters()
    opt = gk.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-2)
    gk.Trainer(model, nn.CrossEntropyLoss(), opt).fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return opt


def same_state_on_every_rank(comm, model, what):
    same_on_every_rank(comm, [p.data for p in model.parameters()] + [p.grad for p in model.parameters()], what)


def frozen_front(model, stop):
    model[:stop].requires_grad_(False)
    for p in model[:stop].parameters():
        p.grad[...] = SENTINEL
    return [p.data.copy() for p in model[:stop].parameters()]


@pytest.mark.parametrize("stop, bucket_cap_mb", [(2, 25), (5, 1e-3), (10, 25)])
def test_frozen_front_matches_one_process_and_is_not_reduced(world, stop, bucket_cap_mb):
    rank, size, comm = world
    b = 5
    x, y = images(size * b * 4)
    gk.manual_seed(1)
    single = cnn()
    gk.manual_seed(1)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(cnn())  # batch statistics over the ranks' batches
    start = frozen_front(single, stop)
    frozen_front(model, stop)
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb)
    bucketed = {id(p) for bucket in ddp._buckets for p in bucket.params}
    assert bucketed == {id(p) for p in model[stop:].parameters()}
    fit(single, x, y, batch_size=size * b)
    opt = fit(ddp, x, y, batch_size=b)
    for p, data in zip(model[:stop].parameters(), start):
        assert p.data.tobytes() == data.tobytes() and np.all(p.grad == SENTINEL)
    assert not any(p in opt.state for p in model[:stop].parameters())
    for (name, p), q in zip(single.named_parameters(), model.parameters()):
        assert_close(q.data, p.data, np.float64, what=name, scale=100)
    same_state_on_every_rank(comm, model, "parameters and gradients")


def test_unfreezing_rebuilds_the_buckets(world):
    rank, size, comm = world
    x, y = images(size * 4 * 3, seed=2)
    gk.manual_seed(3)
    model = cnn()
    start = frozen_front(model, 4)
    ddp = DDP(model, bucket_cap_mb=1e-3)
    fit(ddp, x, y, batch_size=4)
    assert all(p.data.tobytes() == d.tobytes() for p, d in zip(model[:4].parameters(), start))
    model.requires_grad_(True)
    fit(ddp, x, y, batch_size=4)
    assert {id(p) for bucket in ddp._buckets for p in bucket.params} == {id(p) for p in model.parameters()}
    assert all(not np.array_equal(p.data, d) for p, d in zip(model[:4].parameters(), start))
    same_state_on_every_rank(comm, model, "parameters and gradients after unfreezing")


def test_sync_batchnorm_with_a_frozen_weight(world):
    rank, size, comm = world
    x, y = images(size * 6 * 2, seed=4)
    gk.manual_seed(5)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(cnn())
    model[1].weight.requires_grad = False
    model[1].weight.grad[...] = SENTINEL
    weight = model[1].weight.data.copy()
    bias = model[1].bias.data.copy()
    fit(DDP(model), x, y, batch_size=6)
    assert model[1].weight.data.tobytes() == weight.tobytes() and np.all(model[1].weight.grad == SENTINEL)
    assert not np.array_equal(model[1].bias.data, bias)
    same_state_on_every_rank(comm, model, "parameters and gradients")


def test_frozen_on_one_rank_only_raises_on_every_rank(two_ranks):
    rank, size, comm = two_ranks
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].weight.requires_grad = rank == 0
    with pytest.raises(ValueError, match=r"rank 1 has a different model than rank 0: parameter '0.weight' .* "
                                         r"but frozen parameter '0.weight'"):
        DDP(model)
