"""gk.distributed's collectives: values, in-place writes, the same bits on every rank, argument errors."""
import numpy as np
import pytest

import gradkit as gk
from dist_helpers import same_on_every_rank

pytest.importorskip("mpi4py")
dist = gk.distributed


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [0, 1, 7, 1001])
def test_all_reduce_sum_in_place(world, dtype, n):
    rank, size, comm = world
    a = (np.arange(n) * (rank + 1)).astype(dtype)
    out = dist.all_reduce(a)
    assert out is a
    expected = np.arange(n) * sum(r + 1 for r in range(size))
    np.testing.assert_array_equal(a, expected.astype(dtype))
    same_on_every_rank(comm, [a], "all_reduce sum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_reduce_mean_gives_the_same_bits_everywhere(world, dtype):
    rank, size, comm = world
    rng = np.random.default_rng(100 + rank)
    a = rng.standard_normal((3, 333)).astype(dtype)  # sums that round differently in different orders
    everyone = comm.allgather(a.copy())
    dist.all_reduce(a, op="mean")
    expected = np.mean(np.stack(everyone).astype(np.float64), axis=0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(a, expected, rtol=tol, atol=tol)
    same_on_every_rank(comm, [a], "all_reduce mean")


def test_broadcast_from_any_root(world):
    rank, size, comm = world
    for root in range(size):
        a = np.full((2, 3), rank, dtype=np.float32)
        assert dist.broadcast(a, root=root) is a
        np.testing.assert_array_equal(a, np.full((2, 3), root, dtype=np.float32))


def test_rank_world_size_barrier(world):
    rank, size, comm = world
    assert dist.is_initialized()
    assert (dist.rank(), dist.world_size()) == (comm.Get_rank(), comm.Get_size())
    dist.barrier()


def test_bad_arguments_raise_before_any_communication(world):
    a = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.all_reduce(a[:, ::2])
    ro = np.zeros(3, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        dist.all_reduce(ro)
    with pytest.raises(ValueError, match="read-only"):
        dist.broadcast(ro)
    with pytest.raises(ValueError, match="op: expected 'sum' or 'mean', got 'max'"):
        dist.all_reduce(a, op="max")
    with pytest.raises(TypeError, match="op='mean' needs a float array, got dtype int32"):
        dist.all_reduce(np.zeros(3, dtype=np.int32), op="mean")
    with pytest.raises(TypeError, match="expected a numpy.ndarray, got list"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(TypeError, match="numeric dtype"):
        dist.all_reduce(np.zeros(3, dtype=bool))
    with pytest.raises(ValueError, match=r"root: expected an integer in \[0, "):
        dist.broadcast(a, root=dist.world_size())
    with pytest.raises(TypeError, match="root: expected an int"):
        dist.broadcast(a, root=0.0)
