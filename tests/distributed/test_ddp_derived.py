"""DistributedDataParallel of derived-backward models: N ranks with batches of b train as one process
with batches of N * b, including a module called twice (its gradients are reduced only once final)."""
import numpy as np
import pytest

import gradkit as gk
from gradkit import nn
from gradkit.nn import functional as F
from nn_helpers import assert_close
from test_ddp import fit, images

pytest.importorskip("mpi4py")
DDP = gk.distributed.DistributedDataParallel


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


@pytest.mark.parametrize("bucket_cap_mb", [25, 1e-4])
def test_derived_model_on_ranks_matches_one_process(world, bucket_cap_mb):
    rank, size, comm = world
    b = 6
    x, y = images(size * b * 4)
    gk.manual_seed(3)
    single = Branches().double()
    gk.manual_seed(3)
    model = Branches().double()
    _, expected = fit(single, x, y, batch_size=size * b)
    _, got = fit(DDP(model, bucket_cap_mb=bucket_cap_mb), x, y, batch_size=b)
    for (name, p), q in zip(single.named_parameters(), model.parameters()):
        assert_close(q.data, p.data, np.float64, what=name, scale=100)
    for key in expected.history:
        assert_close(got.history[key], expected.history[key], np.float64, what=key, scale=100)
