"""gradkit._checks: the one set of argument rules, and every public entry point keeping to it.

The module's rules first (bool is never a number, NumPy scalars are, bounds, NaN/inf, pairs,
messages that name who asks and which argument); then every public constructor or function
that takes an int (or a real) called with ``True``, which must raise TypeError.
"""
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import _checks, ops
from gradkit import nn
from gradkit.nn import functional as F

# -- the rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_integer_rejects_bool(value):
    with pytest.raises(TypeError, match=r"^Who: n: expected an int, got bool"):
        _checks.integer("Who", "n", value)


@pytest.mark.parametrize("value", [3, np.int8(3), np.int64(3), np.uint32(3)])
def test_integer_accepts_python_and_numpy_ints(value):
    v = _checks.integer("Who", "n", value)
    assert v == 3 and type(v) is int


@pytest.mark.parametrize("value", [3.0, np.float32(3), "3", None, [3]])
def test_integer_rejects_non_integers(value):
    with pytest.raises(TypeError, match=rf"^Who: n: expected an int, got {type(value).__name__}$"):
        _checks.integer("Who", "n", value)


def test_integer_bounds():
    assert _checks.integer("Who", "n", 1, 1, 4) == 1
    assert _checks.integer("Who", "n", 4, 1, 4) == 4
    with pytest.raises(ValueError, match=r"^Who: n: expected an integer in \[1, 4\], got 0$"):
        _checks.integer("Who", "n", 0, 1, 4)
    with pytest.raises(ValueError, match=r"^Who: n: expected an integer in \[1, 4\], got 5$"):
        _checks.integer("Who", "n", 5, 1, 4)
    with pytest.raises(ValueError, match=r"^Who: n: expected an integer >= 0, got -1$"):
        _checks.integer("Who", "n", -1, low=0)
    with pytest.raises(ValueError, match=r"^Who: n: expected an integer <= 2, got 3$"):
        _checks.integer("Who", "n", 3, high=2)


def test_integer_int64_range():
    assert _checks.integer("Who", "n", 2**63 - 1) == 2**63 - 1
    assert _checks.integer("Who", "n", -(2**63)) == -(2**63)
    for v in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(ValueError, match=r"^Who: n: expected a value below 2\*\*63 in magnitude"):
            _checks.integer("Who", "n", v)
    # both bounds given: they are the range (a seed takes uint64)
    assert _checks.integer("Who", "seed", 2**64 - 1, 0, 2**64 - 1) == 2**64 - 1
    with pytest.raises(ValueError, match=rf"expected an integer in \[0, {2**64 - 1}\], got {2**64}$"):
        _checks.integer("Who", "seed", 2**64, 0, 2**64 - 1)


@pytest.mark.parametrize("value", [True, False, np.bool_(False)])
def test_real_rejects_bool(value):
    with pytest.raises(TypeError, match=r"^Who: x: expected a real number, got bool"):
        _checks.real("Who", "x", value)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float64(0.5), 2, np.int16(2)])
def test_real_accepts_python_and_numpy_numbers(value):
    v = _checks.real("Who", "x", value)
    assert v == float(value) and type(v) is float


@pytest.mark.parametrize("value", ["0.5", None, [0.5], 1j])
def test_real_rejects_non_numbers(value):
    with pytest.raises(TypeError, match=r"^Who: x: expected a real number, got"):
        _checks.real("Who", "x", value)


def test_real_nan_and_inf():
    for v in (math.nan, math.inf, -math.inf, np.float32("nan")):
        with pytest.raises(ValueError, match=r"^Who: x: expected a finite number, got"):
            _checks.real("Who", "x", v)
    assert _checks.real("Who", "x", math.inf, finite=False) == math.inf
    with pytest.raises(ValueError, match=r"expected a finite number"):  # NaN is never a value
        _checks.real("Who", "x", math.nan, finite=False)


def test_real_bounds_open_and_closed():
    assert _checks.real("Who", "p", 0, 0, 1, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r"^Who: p: expected a value in \[0, 1\), got 1$"):
        _checks.real("Who", "p", 1, 0, 1, high_open=True)
    with pytest.raises(ValueError, match=r"^Who: lr: expected a value > 0, got 0.0$"):
        _checks.real("Who", "lr", 0.0, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"^Who: f: expected a value in \(0, 1\], got 0$"):
        _checks.real("Who", "f", 0, 0, 1, low_open=True)
    with pytest.raises(ValueError, match=r"^Who: f: expected a value < 1.0, got 1.0$"):
        _checks.real("Who", "f", 1.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match=r"^Who: eps: expected a value >= 0, got -1e-08$"):
        _checks.real("Who", "eps", -1e-8, low=0)
    assert _checks.real("Who", "f", 1.0, 0, 1) == 1.0


def test_boolean():
    assert _checks.boolean("Who", "flag", np.bool_(True)) is True
    assert _checks.boolean("Who", "flag", False) is False
    for v in (0, 1, None, "True", np.int64(1)):
        with pytest.raises(TypeError, match=r"^Who: flag: expected a bool, got"):
            _checks.boolean("Who", "flag", v)


def test_pair():
    assert _checks.pair("Who", "stride", 2) == (2, 2)
    assert _checks.pair("Who", "stride", [1, np.int64(3)]) == (1, 3)
    assert all(type(v) is int for v in _checks.pair("Who", "stride", (np.int32(1), 2)))
    with pytest.raises(ValueError, match=r"^Who: stride: expected an int or a pair of ints, got 3 values \(1, 2, 3\)$"):
        _checks.pair("Who", "stride", (1, 2, 3))
    for bad in (True, (1, True), (np.bool_(False), 1), 1.5, (1, 2.0), "ab", None):
        with pytest.raises(TypeError, match=r"^Who: stride: expected an int or a pair of ints, got"):
            _checks.pair("Who", "stride", bad)
    with pytest.raises(ValueError, match=r"^Who: padding: expected an integer >= 0, got -1$"):
        _checks.pair("Who", "padding", (0, -1), low=0)
    with pytest.raises(ValueError, match=r"^Who: size: expected an integer in \[1, 8\], got 9$"):
        _checks.pair("Who", "size", 9, 1, 8)


def test_instance():
    assert _checks.instance("Who", "opt", 3, int, "an int") == 3
    with pytest.raises(TypeError, match=r"^Who: opt: expected a gk.optim.Optimizer, got str$"):
        _checks.instance("Who", "opt", "sgd", gk.optim.Optimizer, "a gk.optim.Optimizer")


# -- every public entry point rejects True for a number ---------------------------------------------

def _opt():
    return gk.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)


def _trainer():
    model = nn.Linear(2, 2)
    return gk.Trainer(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1))


def _lr_find(**kwargs):
    model = nn.Linear(2, 2)
    return gk.diagnostics.lr_find(model, nn.CrossEntropyLoss(), gk.optim.SGD(model.parameters(), lr=0.1), *_XY,
                                  **kwargs)


_X4 = np.zeros((1, 2, 4, 4), np.float32)
_W = np.zeros((2, 2, 1, 1), np.float32)
_XY = (np.zeros((4, 2), np.float32), np.zeros(4, np.int64))

TRUE_CALLS = {
    # layers
    "Conv2d.in_channels": lambda: nn.Conv2d(True, 2, 1),
    "Conv2d.out_channels": lambda: nn.Conv2d(2, True, 1),
    "Conv2d.kernel_size": lambda: nn.Conv2d(2, 2, True),
    "Conv2d.kernel_size[1]": lambda: nn.Conv2d(2, 2, (1, True)),
    "Conv2d.stride": lambda: nn.Conv2d(2, 2, 1, stride=True),
    "Conv2d.padding": lambda: nn.Conv2d(2, 2, 1, padding=True),
    "Conv2d.dilation": lambda: nn.Conv2d(2, 2, 1, dilation=True),
    "Conv2d.groups": lambda: nn.Conv2d(2, 2, 1, groups=True),
    "MaxPool2d.kernel_size": lambda: nn.MaxPool2d(True),
    "MaxPool2d.stride": lambda: nn.MaxPool2d(2, stride=True),
    "MaxPool2d.padding": lambda: nn.MaxPool2d(2, padding=True),
    "AvgPool2d.kernel_size": lambda: nn.AvgPool2d((2, True)),
    "AvgPool2d.stride": lambda: nn.AvgPool2d(2, stride=True),
    "AvgPool2d.padding": lambda: nn.AvgPool2d(2, padding=True),
    "AdaptiveAvgPool2d.output_size": lambda: nn.AdaptiveAvgPool2d(True),
    "BatchNorm1d.num_features": lambda: nn.BatchNorm1d(True),
    "BatchNorm2d.num_features": lambda: nn.BatchNorm2d(True),
    "BatchNorm2d.eps": lambda: nn.BatchNorm2d(2, eps=True),
    "BatchNorm2d.momentum": lambda: nn.BatchNorm2d(2, momentum=True),
    "LayerNorm.normalized_shape": lambda: nn.LayerNorm(True),
    "LayerNorm.normalized_shape[0]": lambda: nn.LayerNorm((True, 2)),
    "LayerNorm.eps": lambda: nn.LayerNorm(2, eps=True),
    "GroupNorm.num_groups": lambda: nn.GroupNorm(True, 2),
    "GroupNorm.num_channels": lambda: nn.GroupNorm(1, True),
    "InstanceNorm2d.num_features": lambda: nn.InstanceNorm2d(True),
    "Linear.in_features": lambda: nn.Linear(True, 2),
    "Linear.out_features": lambda: nn.Linear(2, True),
    "Flatten.start_dim": lambda: nn.Flatten(start_dim=True),
    "Dropout.p": lambda: nn.Dropout(True),
    "LeakyReLU.negative_slope": lambda: nn.LeakyReLU(True),
    "ELU.alpha": lambda: nn.ELU(True),
    "CrossEntropyLoss.label_smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=True),
    "mlp.dropout": lambda: gk.models.mlp(4, [4], 2, dropout=True),
    # functional and ops
    "F.conv2d.stride": lambda: F.conv2d(_X4, _W, stride=True),
    "F.conv2d.groups": lambda: F.conv2d(_X4, _W, groups=True),
    "F.max_pool2d.kernel_size": lambda: F.max_pool2d(_X4, True),
    "F.avg_pool2d.padding": lambda: F.avg_pool2d(_X4, 2, padding=True),
    "F.dropout.p": lambda: F.dropout(_X4, True),
    "F.cat.dim": lambda: F.cat([_X4, _X4], dim=True),
    "F.flatten.start_dim": lambda: F.flatten(_X4, True),
    "F.leaky_relu.negative_slope": lambda: F.leaky_relu(_X4, True),
    "ops.conv2d_forward.stride": lambda: ops.conv2d_forward(_X4, _W, stride=True),
    "ops.conv2d_forward.dilation": lambda: ops.conv2d_forward(_X4, _W, dilation=(1, True)),
    "ops.conv2d_backward.groups": lambda: ops.conv2d_backward(_X4, _X4, _W, groups=True),
    "ops.max_pool2d_forward.kernel_size": lambda: ops.max_pool2d_forward(_X4, True),
    "ops.avg_pool2d_forward.stride": lambda: ops.avg_pool2d_forward(_X4, 2, stride=True),
    "ops.avg_pool2d_backward.input_shape": lambda: ops.avg_pool2d_backward(_X4, (1, 2, True, 8), 2),
    "ops.group_norm_forward.num_groups": lambda: ops.group_norm_forward(_X4, True),
    "ops.layer_norm_forward.normalized_shape": lambda: ops.layer_norm_forward(_X4, True),
    "ops.batch_norm_forward.momentum": lambda: ops.batch_norm_forward(_X4, momentum=True),
    "ops.batch_norm_forward.eps": lambda: ops.batch_norm_forward(_X4, eps=True),
    "ops.dropout.p": lambda: ops.dropout(_X4, True),
    "ops.leaky_relu.negative_slope": lambda: ops.leaky_relu(_X4, True),
    "ops.leaky_relu_backward.negative_slope": lambda: ops.leaky_relu_backward(_X4, _X4, True),
    "ops.elu.alpha": lambda: ops.elu(_X4, True),
    "ops.elu_backward.alpha": lambda: ops.elu_backward(_X4, _X4, True),
    "ops.cross_entropy.label_smoothing": lambda: ops.cross_entropy(*_XY, label_smoothing=True),
    # data
    "RandomCrop.size": lambda: gk.data.RandomCrop(True),
    "RandomCrop.size[1]": lambda: gk.data.RandomCrop((2, True)),
    "RandomCrop.padding": lambda: gk.data.RandomCrop(2, padding=True),
    "RandomHorizontalFlip.p": lambda: gk.data.RandomHorizontalFlip(True),
    "PCAWhiten.n_components": lambda: gk.data.PCAWhiten(n_components=True),
    "DataLoader.batch_size": lambda: gk.data.DataLoader(gk.data.ArrayDataset(*_XY), batch_size=True),
    "DataLoader.num_workers": lambda: gk.data.DataLoader(gk.data.ArrayDataset(*_XY), num_workers=True),
    # training
    "Trainer.fit.epochs": lambda: _trainer().fit(*_XY, epochs=True, verbose=0),
    "Trainer.fit.batch_size": lambda: _trainer().fit(*_XY, batch_size=True, verbose=0),
    "Trainer.evaluate.batch_size": lambda: _trainer().evaluate(*_XY, batch_size=True),
    "Trainer.predict.batch_size": lambda: _trainer().predict(_XY[0], batch_size=True),
    "lr_find.num_iter": lambda: _lr_find(num_iter=True),
    "SGD.lr": lambda: gk.optim.SGD(nn.Linear(2, 2).parameters(), lr=True),
    "Adam.betas[0]": lambda: gk.optim.Adam(nn.Linear(2, 2).parameters(), betas=(True, 0.9)),
    "StepLR.step_size": lambda: gk.optim.lr_scheduler.StepLR(_opt(), step_size=True),
    "StepLR.gamma": lambda: gk.optim.lr_scheduler.StepLR(_opt(), 1, gamma=True),
    "MultiStepLR.milestones": lambda: gk.optim.lr_scheduler.MultiStepLR(_opt(), [True]),
    "CosineAnnealingLR.T_max": lambda: gk.optim.lr_scheduler.CosineAnnealingLR(_opt(), True),
    "LinearLR.total_iters": lambda: gk.optim.lr_scheduler.LinearLR(_opt(), total_iters=True),
    "OneCycleLR.total_steps": lambda: gk.optim.lr_scheduler.OneCycleLR(_opt(), 0.1, total_steps=True),
    "ReduceLROnPlateau.patience": lambda: gk.optim.lr_scheduler.ReduceLROnPlateau(_opt(), patience=True),
    # process-wide settings and tools
    "set_num_threads": lambda: gk.set_num_threads(True),
    "manual_seed": lambda: gk.manual_seed(True),
    "matmul.alpha": lambda: ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), alpha=True),
    "matmul.beta": lambda: ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), beta=True),
    "init.uniform_.a": lambda: nn.init.uniform_(np.zeros(3, np.float32), a=True),
    "gradcheck.eps": lambda: gk.gradcheck(nn.Linear(2, 2), np.zeros((1, 2)), eps=True),
}


CALLBACK_TRUE_CALLS = {
    "EarlyStopping.patience": lambda: gk.callbacks.EarlyStopping(patience=True),
    "BackupAndRestore.save_freq": lambda: gk.callbacks.BackupAndRestore("unused", save_freq=True),
    "ActivationStats.every_n_batches": lambda: gk.callbacks.ActivationStats(every_n_batches=True),
    "ActivationStats.bins": lambda: gk.callbacks.ActivationStats(bins=True),
}


@pytest.mark.parametrize("call", list(TRUE_CALLS.values()) + list(CALLBACK_TRUE_CALLS.values()),
                         ids=list(TRUE_CALLS) + list(CALLBACK_TRUE_CALLS))
def test_true_is_not_a_number(call):
    """``True`` where an int or a real is expected: TypeError naming the argument, never taken as 1."""
    with pytest.raises(TypeError, match=r"expected (an int|a real number|an int or a pair of ints)"):
        call()


def test_messages_name_who_and_argument():
    cases = [
        (lambda: nn.Conv2d(2, 2, 3, stride=0), ValueError, r"^Conv2d: stride: expected an integer >= 1, got 0$"),
        (lambda: nn.MaxPool2d(2, padding=2), ValueError, r"^MaxPool2d: padding: expected at most half the kernel"),
        (lambda: nn.GroupNorm(True, 4), TypeError, r"^GroupNorm: num_groups: expected an int, got bool True$"),
        (lambda: ops.conv2d_forward(_X4, _W, padding=-1), ValueError,
         r"^conv2d_forward: padding: expected an integer >= 0, got -1$"),
        (lambda: F.max_pool2d(_X4, 0), ValueError, r"^max_pool2d: kernel_size: expected an integer >= 1, got 0$"),
        (lambda: gk.optim.lr_scheduler.StepLR(_opt(), 0), ValueError,
         r"^StepLR: step_size: expected an integer >= 1, got 0$"),
        (lambda: gk.set_num_threads(0), ValueError, r"^set_num_threads: n: expected an integer in \[1, 1024\]"),
        (lambda: nn.Dropout(1.0), ValueError, r"^Dropout: p: expected a value in \[0, 1\), got 1.0$"),
    ]
    for call, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            call()


def test_layer_hyperparameters_are_read_only():
    """Conv2d and the pools pass their arguments to the kernels unchecked after construction, so they
    cannot be changed behind the check (a zero stride would divide by zero in C++)."""
    conv, pool = nn.Conv2d(2, 2, 3, stride=2), nn.MaxPool2d(2)
    assert (conv.stride, conv.padding, conv.dilation, conv.groups) == ((2, 2), (0, 0), (1, 1), 1)
    assert (pool.kernel_size, pool.stride, pool.padding) == (2, 2, 0)
    for layer, name in ((conv, "stride"), (conv, "padding"), (conv, "dilation"), (conv, "groups"),
                        (pool, "kernel_size"), (pool, "stride"), (pool, "padding")):
        with pytest.raises(AttributeError):
            setattr(layer, name, 0)
