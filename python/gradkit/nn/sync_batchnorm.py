"""``SyncBatchNorm``: batch normalization with statistics over the batches of every MPI rank."""
from __future__ import annotations

import numpy as np

from .. import _mpi, ops
from .module import Module
from .normalization import _BatchNorm

__all__ = ["SyncBatchNorm"]


def _combine(stats) -> tuple:
    """(count, mean, M2) per rank, shape (ranks, 3, C), merged in rank order (Chan et al.):
    the same float64 bits on every rank, and no cancellation as in sum-of-squares."""
    n, mean, m2 = 0.0, np.zeros(stats.shape[2]), np.zeros(stats.shape[2])
    for count, mean_b, m2_b in stats:
        nb = count[0]
        if nb == 0:
            continue
        total = n + nb
        delta = mean_b - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2_b + delta * delta * (n * nb / total)
        n = total
    return n, mean, m2


class SyncBatchNorm(_BatchNorm):
    r"""Batch norm whose training statistics cover the batches of all ranks (as PyTorch's).

    In training, each rank's per-channel (count, mean, M2) is gathered and merged, so every
    rank normalises with the mean and biased variance of the combined batch and updates its
    running statistics identically; backward adds the two per-channel reductions
    (``sum dy`` and ``sum dy * x_hat``) over ranks. The parameter gradients stay per rank
    (``DistributedDataParallel`` averages them). The result matches ``BatchNorm`` on the
    concatenated batch to float rounding. In eval mode, or when ``gk.distributed`` is not
    initialised, it is a plain batch norm. Use ``convert_sync_batchnorm`` on a built model.

    Args:
        num_features, eps (1e-5), momentum (0.1), affine (True), track_running_stats (True):
            as ``BatchNorm2d``.

    Shape: input (N, C, *) (any rank >= 2), output the same.
    """

    def _check_input_dim(self, x) -> None:
        if x.ndim < 2:
            raise ValueError(f"SyncBatchNorm: input: expected an (N, C, ...) array, got {x.ndim}-D of shape {x.shape}")

    def _local_stats(self, x) -> np.ndarray:
        """This rank's per-channel (count, mean, M2), shape (3, C), float64."""
        c = x.shape[1]
        n = x.size // c
        stats = np.zeros((3, c))
        stats[0] = n
        if n >= 2:  # the kernel's statistics; eps=0: var = 1 / rstd**2 (inf rstd: var 0)
            _, stats[1], rstd = ops.batch_norm_forward(x, training=True, eps=0.0)
            stats[2] = n / (rstd * rstd)
        elif n == 1:
            stats[1] = x.reshape(c)
        return stats

    def _norm_forward(self, x, weight, bias):
        use_batch_stats, update, momentum, _ = self._stats_args()
        if not (use_batch_stats and _mpi.is_initialized()):
            return super()._norm_forward(x, weight, bias)
        comm = _mpi.communicator("SyncBatchNorm")
        gathered = np.empty((comm.Get_size(), 3, x.shape[1]))
        comm.Allgather(self._local_stats(x), gathered)
        count, mean, m2 = _combine(gathered)
        if count <= 1:
            raise ValueError(f"SyncBatchNorm: input: expected more than 1 value per channel when training over all "
                             f"ranks, got {int(count)} (local input shape {x.shape})")
        var = m2 / count
        # Normalise with the combined statistics: the kernel's eval path, given them as "running" ones.
        y, _, _ = ops.batch_norm_forward(x, weight, bias, mean.astype(x.dtype), var.astype(x.dtype),
                                         training=False, eps=self.eps)
        if update:
            for running, batch in ((self.running_mean, mean), (self.running_var, m2 / (count - 1))):
                running[...] = (1.0 - momentum) * running + momentum * batch
            self.num_batches_tracked += 1
        return y, dict(mean=mean, rstd=1.0 / np.sqrt(var + self.eps), count=count, synced=True)

    def _norm_backward(self, dy, x, saved, weight, dweight, dbias):
        if not saved.get("synced"):
            return super()._norm_backward(dy, x, saved, weight, dweight, dbias)
        mean, rstd = saved["mean"], saved["rstd"]
        # The kernel's eval-mode backward: dx = dy * weight * rstd, and this rank's sum(dy * x_hat), sum(dy).
        sums = np.zeros((2, x.shape[1]), dtype=x.dtype)
        dx = ops.batch_norm_backward(dy, x, mean, rstd, weight, sums[0], sums[1], training=False)
        if dweight is not None:  # this rank's share (None: frozen); DistributedDataParallel averages them
            dweight += sums[0]
        if dbias is not None:
            dbias += sums[1]
        sums = _mpi.all_reduce(sums.astype(np.float64)) / saved["count"]
        # The batch statistics' part: dx -= weight * rstd * (mean(dy) + x_hat * mean(dy * x_hat)) = a + b * x
        scale = rstd if weight is None else rstd * weight
        b = scale * rstd * sums[0]
        a = scale * sums[1] - b * mean
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        dx -= x * b.astype(x.dtype).reshape(shape)
        dx -= a.astype(x.dtype).reshape(shape)
        return dx

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """Replace every ``BatchNorm1d/2d`` in ``module`` by a ``SyncBatchNorm`` sharing its
        parameters, buffers and mode; returns the converted module (a new one if ``module``
        itself is a batch norm)."""
        if not isinstance(module, Module):
            raise TypeError(f"SyncBatchNorm.convert_sync_batchnorm: module: expected a gk.nn.Module, "
                            f"got {type(module).__name__}")
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name, p in module.named_parameters(recurse=False):
                new.register_parameter(name, p)
            for name, b in module.named_buffers(recurse=False):
                new.register_buffer(name, b)
            return new.train(module.training)
        for name, child in module.named_children():
            module._modules[name] = cls.convert_sync_batchnorm(child)  # in place: the children keep their order
        return module
