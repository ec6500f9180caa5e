"""Every public op of gk.ops, forward and backward, float32 and float64, on small shapes.

This suite runs under emulated CPUs (qemu-x86_64 -cpu Haswell / Nehalem, see .ci/run), where
the whole suite would take hours. It reruns the main suite's checks against float64 NumPy
references (tests/test_*.py) on a small grid: sizes 0 and 1, SIMD tails (7, 17, 33 elements
or channels), every ISA the CPU has and 1 and 2 threads.
"""
import numpy as np
import pytest

import test_nn_activation
import test_nn_conv
import test_nn_dropout
import test_nn_fusion
import test_ops_matmul
import test_nn_loss
import test_nn_normalization
import test_nn_pooling
from gradkit import ops

SIZES = [0, 1, 7, 17, 33]
GEMM_SHAPES = [(1, 1, 1), (7, 17, 33), (33, 7, 17), (17, 33, 7), (0, 7, 17), (7, 0, 17), (17, 7, 0)]
POOLS = [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1))]
POOL_SHAPES = [(2, 7, 5, 17), (1, 17, 7, 33), (1, 33, 3, 7)]
CONVS = [  # N, C, H, W, OC, kernel, stride, padding, dilation, groups
    (1, 1, 1, 1, 1, 1, 1, 0, 1, 1),
    (2, 1, 7, 7, 7, 3, 1, 1, 1, 1),  # one input channel: the direct kernel
    (2, 7, 9, 9, 17, 3, 1, 1, 1, 1),  # 3x3 stride 1: Winograd, the micro-kernel on the planes
    (1, 70, 6, 5, 72, 3, 1, 1, 1, 1),  # 3x3 stride 1: Winograd, large planes through gk::gemm
    (1, 17, 6, 5, 33, 3, 2, 1, 1, 1),  # strided: im2col + GEMM
    (2, 33, 5, 5, 33, 3, 1, 1, 1, 33),  # depthwise
    (1, 7, 5, 7, 7, 1, 1, 0, 1, 1),  # 1x1
    (2, 4, 8, 8, 6, (3, 2), 1, 2, 2, 2),  # dilation and groups
    (0, 3, 5, 5, 4, 3, 1, 1, 1, 1),  # empty batch
]


def activations(name):
    def run(dtype, isa, threads, rng):
        for n in SIZES:
            test_nn_activation.test_forward_matches_float64(name, n, dtype, isa, threads)
            test_nn_activation.test_backward_matches_float64(name, n, dtype, isa, threads)
    return run


def matmul(dtype, isa, threads, rng):
    for m, n, k in GEMM_SHAPES:
        for trans_a in (False, True):
            for trans_b in (False, True):
                test_ops_matmul.test_matmul_sizes_and_transposes(isa, threads, rng, m, n, k, trans_a, trans_b, dtype)
    for per_row in (False, True):
        test_ops_matmul.test_bias_and_relu_epilogue(isa, threads, rng, 7, 17, 33, per_row, dtype)


def dropout(dtype, isa, threads, rng):
    for n in SIZES:
        test_nn_dropout.test_forward_backward(n, dtype, isa, threads)


def cross_entropy(dtype, isa, threads, rng):
    for shape in [(1, 1), (7, 17), (17, 33), (33, 7)]:
        for eps in (0.0, 0.1):
            test_nn_loss.test_cross_entropy_matches_float64(shape, dtype, eps, isa, threads)


def mse_loss(dtype, isa, threads, rng):
    for n in SIZES[1:]:  # the mean of nothing is NaN
        test_nn_loss.test_mse_matches_float64(n, dtype, isa, threads)


def batch_norm(dtype, isa, threads, rng):
    for shape in [(2, 1), (7, 17), (2, 33), (3, 7, 1, 1), (2, 17, 3, 5)]:
        for affine in (True, False):
            test_nn_normalization.test_batch_norm_train_matches_reference(isa, threads, rng, dtype, shape, affine)
    for shape in [(7, 17), (2, 33, 3, 3)]:
        test_nn_normalization.test_batch_norm_eval_uses_running_stats(isa, threads, rng, dtype, shape)


def layer_norm(dtype, isa, threads, rng):
    for shape, nshape in [((1, 1), (1,)), ((0, 5), (5,)), ((7, 17), (17,)), ((3, 2, 33), (2, 33)), ((2, 7), (7,))]:
        for affine in (True, False):
            test_nn_normalization.test_layer_norm_matches_reference(isa, threads, rng, dtype, shape, nshape, affine)


def group_norm(dtype, isa, threads, rng):
    for shape, groups in [((2, 17, 3, 3), 1), ((1, 33, 2), 3), ((3, 7, 5), 7), ((0, 4, 3), 2)]:
        for affine in (True, False):
            test_nn_normalization.test_group_norm_matches_reference(isa, threads, rng, dtype, shape, groups, affine)


def instance_norm(dtype, isa, threads, rng):
    for shape in [(2, 7, 3, 5), (1, 17, 1, 1), (1, 33, 2, 2)]:
        c = shape[1]
        x, dy, w, b = test_nn_normalization.case(rng, shape, dtype, c, True, loc=1.0, scale=2.0)
        dw, db = np.zeros(c, dtype), np.zeros(c, dtype)
        y, mean, rstd = ops.instance_norm_forward(x, w, b)
        dx = ops.instance_norm_backward(dy, x, mean, rstd, w, dw, db)
        y_ref, mean_ref, rstd_ref, dx_ref, dw_ref, db_ref = test_nn_normalization.gn_ref(x, c, w, b, dy, 1e-5)
        tol = test_nn_normalization.TOL[dtype] * 20
        for got, want, what in [(y, y_ref, "y"), (mean, mean_ref, "mean"), (rstd / rstd_ref, 1.0, "rstd"),
                                (dx, dx_ref, "dx"), (dw, dw_ref, "dweight"), (db, db_ref, "dbias")]:
            test_nn_normalization.assert_close(got, np.broadcast_to(want, np.shape(got)), tol,
                                               f"instance norm {shape} {what}")


def batch_norm_relu(dtype, isa, threads, rng):
    for shape in [(2, 1), (7, 17), (3, 7, 1, 1), (2, 17, 3, 5)]:
        for with_res in (False, True):
            test_nn_normalization.test_batch_norm_relu_matches_reference(isa, threads, rng, dtype, shape, with_res, True)
            test_nn_normalization.test_batch_norm_relu_eval_and_no_param_grads(isa, threads, rng, dtype, shape, with_res)


def batch_norm_relu_pool2(dtype, isa, threads, rng):
    for shape in [(2, 7, 4, 4), (1, 17, 3, 5), (2, 1, 2, 33), (1, 33, 2, 3)]:
        for training in (True, False):
            for affine in (True, False):
                test_nn_fusion.test_matches_reference(isa, threads, rng, dtype, shape, training, affine)


def conv2d(dtype, isa, threads, rng):
    for n, c, h, w, oc, kernel, stride, padding, dilation, groups in CONVS:
        for bias in (True, False):
            test_nn_conv.check_conv(rng, dtype, n, c, h, w, oc, kernel, stride, padding, dilation, groups, bias)


def conv2d_backward_parts(dtype, isa, threads, rng):
    for n, c, h, w, oc, kernel, stride, padding, dilation, groups in CONVS:
        kh, kw = test_nn_conv._pair(kernel)
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        weight = rng.standard_normal((oc, c // groups, kh, kw)).astype(dtype)
        y_ref, backward = test_nn_conv.ref_conv(x, weight, None, stride, padding, dilation, groups)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        dx_ref, dw_ref, db_ref = backward(dy)
        args = (stride, padding, dilation, groups)
        test_nn_conv.assert_close(ops.conv2d_backward_input(dy, x, weight, *args), dx_ref, dtype, "dx")
        dw0 = rng.standard_normal(weight.shape).astype(dtype)
        dw, db = ops.conv2d_backward_weight(dy, x, weight, *args, dweight=dw0.copy())
        test_nn_conv.assert_close(dw, dw0 + dw_ref, dtype, "dweight (added into)")
        test_nn_conv.assert_close(db, db_ref, dtype, "dbias")


def max_pool2d(dtype, isa, threads, rng):
    test_nn_pooling.test_pool2d(isa, threads, rng, "max", dtype, 1, 1, 0, (1, 1, 1, 1))
    for shape in POOL_SHAPES:
        for kernel, stride, padding in POOLS:
            test_nn_pooling.test_pool2d(isa, threads, rng, "max", dtype, kernel, stride, padding, shape)


def avg_pool2d(dtype, isa, threads, rng):
    test_nn_pooling.test_pool2d(isa, threads, rng, "avg", dtype, 1, 1, 0, (1, 1, 1, 1))
    for shape in POOL_SHAPES:
        for kernel, stride, padding in POOLS:
            test_nn_pooling.test_pool2d(isa, threads, rng, "avg", dtype, kernel, stride, padding, shape)


def global_avg_pool2d(dtype, isa, threads, rng):
    for shape in [(1, 1, 1, 1), (0, 3, 4, 4)] + POOL_SHAPES:
        test_nn_pooling.test_global_avg_pool2d(isa, threads, rng, dtype, shape)


def pair(name):
    return name, name + "_backward"


CASES = {  # case -> (the gk.ops functions it calls, the check)
    **{name: (pair(name), activations(name)) for name in test_nn_activation.ACTS},
    "matmul": (("matmul",), matmul),
    "dropout": (pair("dropout"), dropout),
    "cross_entropy": (("cross_entropy",), cross_entropy),
    "mse_loss": (("mse_loss",), mse_loss),
    "batch_norm": (("batch_norm_forward", "batch_norm_backward"), batch_norm),
    "layer_norm": (("layer_norm_forward", "layer_norm_backward"), layer_norm),
    "group_norm": (("group_norm_forward", "group_norm_backward"), group_norm),
    "instance_norm": (("instance_norm_forward", "instance_norm_backward"), instance_norm),
    "batch_norm_relu": (("batch_norm_relu_forward", "batch_norm_relu_backward"), batch_norm_relu),
    "batch_norm_relu_pool2": (("batch_norm_relu_pool2_forward", "batch_norm_relu_pool2_backward"),
                              batch_norm_relu_pool2),
    "conv2d": (("conv2d_forward", "conv2d_backward"), conv2d),
    "conv2d_backward_parts": (("conv2d_backward_input", "conv2d_backward_weight"), conv2d_backward_parts),
    "max_pool2d": (("max_pool2d_forward", "max_pool2d_backward"), max_pool2d),
    "avg_pool2d": (("avg_pool2d_forward", "avg_pool2d_backward"), avg_pool2d),
    "global_avg_pool2d": (("global_avg_pool2d_forward", "global_avg_pool2d_backward"), global_avg_pool2d),
}


def test_every_public_op_has_a_case():
    covered = {name for names, _ in CASES.values() for name in names}
    assert covered <= set(ops.__all__), f"cases name ops that gk.ops does not export: {covered - set(ops.__all__)}"
    missing = set(ops.__all__) - covered
    assert not missing, f"gk.ops functions with no case in tests/portable: {sorted(missing)}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_op_matches_float64_reference(case, dtype, isa, threads):
    CASES[case][1](dtype, isa, threads, np.random.default_rng(1234))
