"""Every layer of gk.nn, forward and backward, float32 and float64, on small shapes with SIMD
tails (1, 7, 17, 33 features or channels), for the emulated-CPU runs of .ci/run.

The checks are tests/test_nn_layer_contract.py's (float64 forward against NumPy, gradcheck in float64,
float32 against float64 on every ISA and 1 and 2 threads), run on this file's table, and the Dropout,
BatchNorm and loss module tests of test_nn_dropout.py, test_nn_normalization.py and test_nn_loss.py.
"""
import numpy as np
import pytest

import gradkit as gk
import test_nn_dropout
import test_nn_layer_contract as all_
import test_nn_loss
import test_nn_normalization
from gradkit import nn
from test_nn_layer_contract import (Spec, ref_batchnorm, ref_groupnorm, ref_instancenorm, ref_layernorm, ref_linear,
                                    ref_pool)
from test_nn_pooling import ref_adaptive_avg_pool

SPECS = [
    Spec("Linear(17,33)", lambda: nn.Linear(17, 33), (7, 17), ref_linear, ("Linear",)),
    Spec("Linear(1,7,bias=False)", lambda: nn.Linear(1, 7, bias=False), (1, 1), ref_linear, ("Linear",)),
    all_._conv(1, 7, 3, padding=1, shape=(2, 1, 7, 7)),
    all_._conv(7, 17, 3, padding=1, shape=(1, 7, 6, 5)),
    all_._conv(17, 33, 3, stride=2, padding=1, shape=(1, 17, 5, 5)),
    all_._conv(33, 33, 3, padding=1, groups=33, bias=False, shape=(1, 33, 4, 4)),
    all_._conv(7, 1, 1, shape=(2, 7, 3, 3)),
    Spec("MaxPool2d(2) C=17", lambda: nn.MaxPool2d(2), (1, 17, 4, 6), lambda m, x: ref_pool(x, 2, None, 0, "max"),
         ("MaxPool2d",), inputs="distinct"),
    Spec("MaxPool2d(3,2,1) W=33", lambda: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 5, 33),
         lambda m, x: ref_pool(x, 3, 2, 1, "max"), ("MaxPool2d",), inputs="distinct"),
    Spec("AvgPool2d(2) C=7", lambda: nn.AvgPool2d(2), (2, 7, 5, 5), lambda m, x: ref_pool(x, 2, None, 0, "avg"),
         ("AvgPool2d",)),
    Spec("AvgPool2d(3,2,1) W=17", lambda: nn.AvgPool2d(3, stride=2, padding=1), (1, 3, 4, 17),
         lambda m, x: ref_pool(x, 3, 2, 1, "avg"), ("AvgPool2d",)),
    Spec("GlobalAvgPool2d C=33", lambda: nn.GlobalAvgPool2d(), (2, 33, 3, 1), lambda m, x: x.mean(axis=(2, 3)),
         ("GlobalAvgPool2d",)),
    Spec("AdaptiveAvgPool2d(7) C=17 1x1", lambda: nn.AdaptiveAvgPool2d(7), (2, 17, 1, 1),
         lambda m, x: ref_adaptive_avg_pool(x, 7, 7)[0], ("AdaptiveAvgPool2d",)),
    Spec("AdaptiveAvgPool2d((2,3)) W=17", lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 7, 5, 17),
         lambda m, x: ref_adaptive_avg_pool(x, 2, 3)[0], ("AdaptiveAvgPool2d",)),
    Spec("Flatten", lambda: nn.Flatten(), (2, 7, 1, 3), lambda m, x: x.reshape(2, -1), ("Flatten",)),
    *[all_._act(name, shape) for name in all_.ACTIVATIONS for shape in [(1, 1), (2, 17), (33,)]],
    all_._act("LeakyReLU", (7,), negative_slope=0.2),
    all_._act("ELU", (7,), alpha=0.5),
    Spec("Dropout(0.3) eval", lambda: nn.Dropout(0.3).eval(), (2, 17), lambda m, x: x, ("Dropout",)),
    Spec("BatchNorm1d(17)", lambda: nn.BatchNorm1d(17), (7, 17), ref_batchnorm, ("BatchNorm1d",)),
    Spec("BatchNorm1d(1) (N,C,L)", lambda: nn.BatchNorm1d(1), (3, 1, 7), ref_batchnorm, ("BatchNorm1d",)),
    Spec("BatchNorm2d(33)", lambda: nn.BatchNorm2d(33), (2, 33, 2, 3), ref_batchnorm, ("BatchNorm2d",)),
    Spec("BatchNorm2d(7,affine=False)", lambda: nn.BatchNorm2d(7, affine=False), (3, 7, 1, 1), ref_batchnorm,
         ("BatchNorm2d",)),
    Spec("LayerNorm(33)", lambda: nn.LayerNorm(33), (7, 33), lambda m, x: ref_layernorm(m, x, (33,)), ("LayerNorm",)),
    Spec("LayerNorm((1,17))", lambda: nn.LayerNorm((1, 17)), (2, 1, 17), lambda m, x: ref_layernorm(m, x, (1, 17)),
         ("LayerNorm",)),
    Spec("GroupNorm(1,17)", lambda: nn.GroupNorm(1, 17), (2, 17, 2, 2), lambda m, x: ref_groupnorm(m, x, 1),
         ("GroupNorm",)),
    Spec("GroupNorm(7,7,affine=False)", lambda: nn.GroupNorm(7, 7, affine=False), (1, 7, 3, 5),
         lambda m, x: ref_groupnorm(m, x, 7), ("GroupNorm",)),
    Spec("InstanceNorm2d(17,affine=True)", lambda: nn.InstanceNorm2d(17, affine=True), (2, 17, 3, 3),
         ref_instancenorm, ("InstanceNorm2d",)),
    Spec("InstanceNorm2d(1)", lambda: nn.InstanceNorm2d(1), (1, 1, 7, 1), ref_instancenorm, ("InstanceNorm2d",)),
    Spec("Sequential(Linear,Tanh,Linear)", lambda: nn.Sequential(nn.Linear(7, 17), nn.Tanh(), nn.Linear(17, 1)),
         (3, 7), lambda m, x: ref_linear(m[2], np.tanh(ref_linear(m[0], x))), ("Sequential", "Linear", "Tanh")),
    Spec("Residual(Sequential(Linear,Tanh))", lambda: nn.Residual(nn.Sequential(nn.Linear(17, 17), nn.Tanh())),
         (2, 17), lambda m, x: x + np.tanh(ref_linear(m.block[0], x)), ("Residual", "Sequential", "Linear", "Tanh")),
    Spec("nested CNN block", all_.SPECS[-1].make, all_.SPECS[-1].shape, all_.SPECS[-1].ref, all_.SPECS[-1].needs),
]
IDS = [s.id for s in SPECS]
LOSSES = {"CrossEntropyLoss", "MSELoss"}  # checked by the loss tests below
NOT_LAYERS = {"Module", "Parameter", "init", "functional"}  # functional: ops for derived models, not a layer


# SyncBatchNorm in one process (no MPI job) is a batch norm; its distributed path is in tests/distributed.
SINGLE_PROCESS = {"SyncBatchNorm"}


@pytest.mark.parametrize("shape", [(7, 17), (5, 3, 4, 7)])
def test_sync_batch_norm_in_one_process_is_batch_norm(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    sync, plain = nn.SyncBatchNorm(shape[1]), (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(shape[1])
    # Without an MPI world it runs BatchNorm's kernels: the same bits. Once gk.distributed.init()
    # has run (the suite's tests/distributed do, as one rank), it takes the distributed path,
    # whose statistics are summed differently: BatchNorm's values to float32 rounding.
    if gk.distributed.is_initialized():
        def same(a, b):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    else:
        def same(a, b):
            assert np.array_equal(a, b), f"max |diff| {np.abs(a - b).max()}"
    same(sync(x), plain(x))
    same(sync.backward(dy), plain.backward(dy))
    for p, q in zip(sync.parameters(), plain.parameters()):
        same(p.grad, q.grad)
    same(sync.running_var, plain.running_var)


def test_every_layer_has_a_case():
    covered = {name for spec in SPECS for name in spec.needs} | LOSSES | SINGLE_PROCESS
    missing = set(nn.__all__) - NOT_LAYERS - covered
    assert not missing, f"gk.nn layers with no case in tests/portable: {sorted(missing)}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_float64_forward_against_numpy(spec):
    all_.test_forward_matches_numpy_reference_in_float64(spec)


MODES = [(spec, "train") for spec in SPECS] + [(spec, "eval") for spec in SPECS if spec.id.startswith(
    ("BatchNorm", "Dropout", "nested"))]  # the layers whose eval forward differs


@pytest.mark.parametrize("spec,mode", MODES, ids=[f"{spec.id}-{mode}" for spec, mode in MODES])
def test_float64_backward_by_gradcheck(spec, mode):
    # Thousands of tiny forwards: on one thread, none waits at a barrier for a thread that
    # an emulated or loaded CPU has not scheduled. 1 and 2 threads are compared below.
    gk.set_num_threads(1)
    all_.test_gradcheck(spec, mode)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_float32_against_float64(spec, isa, threads):
    all_.test_float32_matches_float64_forward_and_backward(spec, isa, threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_module(dtype):
    test_nn_dropout.test_module(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,shape", [("BatchNorm1d", (16, 4)), ("BatchNorm2d", (6, 4, 3, 5))])
def test_batchnorm_running_statistics(name, shape, dtype, rng):
    test_nn_normalization.test_batch_norm_module_defaults(rng, name, shape, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,c", [(1, 1), (7, 17), (2, 33)])
def test_cross_entropy_loss(n, c, dtype):
    test_nn_loss.test_cross_entropy_module_matches_float64_and_gradcheck(n, c, 0.1, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 17), (2, 33)])
def test_mse_loss(shape, dtype):
    test_nn_loss.test_mse_module_matches_float64_and_gradcheck(shape, dtype)
