"""SyncBatchNorm on each rank's part of a batch matches BatchNorm on the whole batch (forward, backward,
running statistics); convert_sync_batchnorm."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from nn_helpers import assert_close

pytest.importorskip("mpi4py")


def whole_and_part(world, shape, dtype, seed):
    """The same global batch on every rank, and this rank's contiguous part of it."""
    rank, size, comm = world
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((shape[0] * size,) + shape[1:]) * 3 + 5).astype(dtype)  # a mean far from 0
    dy = rng.standard_normal(x.shape).astype(dtype)
    part = slice(rank * shape[0], (rank + 1) * shape[0])
    return x, dy, part


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, affine", [((4, 3), True), ((1, 5), True), ((3, 2, 7), False), ((2, 4, 5, 3), True),
                                           ((5, 16, 3, 3), False)])
def test_matches_batch_norm_on_the_whole_batch(world, shape, affine, dtype):
    rank, size, comm = world
    if shape[0] * size == 1:
        pytest.skip("one value per channel: batch norm refuses to train on it")
    x, dy, part = whole_and_part(world, shape, dtype, seed=len(shape) + shape[0])
    c = shape[1]
    bn = (nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)(c, affine=affine).to(dtype)
    sync = nn.SyncBatchNorm(c, affine=affine).to(dtype)
    if affine:
        for layer in (bn, sync):
            layer.weight.data[...] = np.linspace(0.5, 2.0, c)
            layer.bias.data[...] = np.linspace(-1.0, 1.0, c)
    expected_y = bn(x)
    expected_dx = bn.backward(dy)
    y = sync(np.ascontiguousarray(x[part]))
    dx = sync.backward(np.ascontiguousarray(dy[part]))
    scale = 10 if dtype == np.float64 else 30
    assert_close(y, expected_y[part], dtype, what="y", scale=scale)
    assert_close(dx, expected_dx[part], dtype, what="dx", scale=scale)
    for name in ("running_mean", "running_var"):
        assert_close(getattr(sync, name), getattr(bn, name), dtype, what=name, scale=scale)
    assert int(sync.num_batches_tracked) == 1
    if affine:  # per-rank shares that add up to the whole batch's gradient
        for name in ("weight", "bias"):
            grad = getattr(sync, name).grad.astype(np.float64)
            gk.distributed.all_reduce(grad)
            assert_close(grad, getattr(bn, name).grad, dtype, what=f"d{name}", scale=scale)
    sync.eval(), bn.eval()
    assert_close(sync(x), bn(x), dtype, what="eval y", scale=scale)


def test_a_constant_channel_matches_batch_norm(world):
    rank, size, comm = world
    x, dy, part = whole_and_part(world, (4, 2, 3), np.float64, seed=9)
    x[:, 0] = 2.5  # zero variance on every rank
    bn, sync = nn.BatchNorm1d(2).double(), nn.SyncBatchNorm(2).double()
    assert_close(sync(np.ascontiguousarray(x[part])), bn(x)[part], np.float64, what="y")
    assert_close(sync.backward(np.ascontiguousarray(dy[part])), bn.backward(dy)[part], np.float64, what="dx",
                 scale=100)
    assert_close(sync.running_var, bn.running_var, np.float64, what="running_var")


def test_one_value_per_channel_over_all_ranks_is_refused_on_every_rank(world):
    rank, size, comm = world
    x = np.ones((1 if rank == 0 else 0, 3), dtype=np.float32)  # one sample in all, on rank 0
    with pytest.raises(ValueError, match="expected more than 1 value per channel when training over all ranks, got 1"):
        nn.SyncBatchNorm(3)(x)


def test_convert_sync_batchnorm_shares_parameters_buffers_and_mode():
    bn = nn.BatchNorm2d(4, momentum=None, eps=1e-3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), bn, nn.Residual(nn.Sequential(nn.BatchNorm1d(4))))
    bn.running_mean += 1
    model.eval()
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    sync = model[1]
    assert type(sync) is nn.SyncBatchNorm and type(model[2].block[0]) is nn.SyncBatchNorm
    assert sync.weight is bn.weight and sync.bias is bn.bias and sync.running_mean is bn.running_mean
    assert (sync.eps, sync.momentum, sync.training) == (1e-3, None, False)
    assert list(model.state_dict()) == list(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Residual(
        nn.Sequential(nn.BatchNorm1d(4)))).state_dict())
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert type(single) is nn.SyncBatchNorm
    with pytest.raises(TypeError, match="module: expected a gk.nn.Module, got int"):
        nn.SyncBatchNorm.convert_sync_batchnorm(3)
