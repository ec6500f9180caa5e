"""conv2d forward and backward against a float64 NumPy reference, on every ISA and 1 and 2 threads."""
import itertools

import numpy as np
import pytest

import gradkit as gk
from gradkit import ops


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv(x, w, b, stride, padding, dilation, groups):
    """Naive float64 conv2d (PyTorch's cross-correlation); returns y and a backward function."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x, w = x.astype(np.float64), w.astype(np.float64)
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OCg = OC // groups
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))

    def window(kh, kw):
        return (slice(kh * dh, kh * dh + sh * (OH - 1) + 1, sh), slice(kw * dw, kw * dw + sw * (OW - 1) + 1, sw))

    y = np.zeros((N, OC, OH, OW))
    for g, kh, kw in itertools.product(range(groups), range(KH), range(KW)):
        patch = xp[(slice(None), slice(g * Cg, (g + 1) * Cg)) + window(kh, kw)]
        y[:, g * OCg:(g + 1) * OCg] += np.einsum("nchw,oc->nohw", patch, w[g * OCg:(g + 1) * OCg, :, kh, kw])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]

    def backward(dy):
        dy = dy.astype(np.float64)
        dxp = np.zeros_like(xp)
        dwt = np.zeros_like(w)
        for g, kh, kw in itertools.product(range(groups), range(KH), range(KW)):
            cs = slice(g * Cg, (g + 1) * Cg)
            dyg = dy[:, g * OCg:(g + 1) * OCg]
            idx = (slice(None), cs) + window(kh, kw)
            dxp[idx] += np.einsum("nohw,oc->nchw", dyg, w[g * OCg:(g + 1) * OCg, :, kh, kw])
            dwt[g * OCg:(g + 1) * OCg, :, kh, kw] = np.einsum("nohw,nchw->oc", dyg, xp[idx])
        return dxp[:, :, ph:ph + H, pw:pw + W], dwt, dy.sum(axis=(0, 2, 3))

    return y, backward


TOL = {np.float32: 2e-5, np.float64: 1e-12}


def assert_close(got, want, dtype, name):
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
    assert got.dtype == dtype, f"{name}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    assert err <= TOL[dtype] * 10, f"{name}: max relative difference {err:.3g} > {TOL[dtype] * 10:.1g}"


def check_conv(rng, dtype, N, C, H, W, OC, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True):
    kh, kw = _pair(kernel)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    y_ref, backward = ref_conv(x, w, b, stride, padding, dilation, groups)
    y = ops.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    assert_close(y, y_ref, dtype, "y")
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = backward(dy)
    dw0 = rng.standard_normal(w.shape).astype(dtype)  # backward ADDS into dweight / dbias
    db0 = rng.standard_normal(OC).astype(dtype)
    dw_acc, db_acc = dw0.copy(), db0.copy()
    dx, dw_out, db_out = ops.conv2d_backward(dy, x, w, stride, padding, dilation, groups, dweight=dw_acc,
                                             dbias=db_acc if bias else None, need_dbias=bias)
    assert dw_out is dw_acc
    assert_close(dx, dx_ref, dtype, "dx")
    assert_close(dw_acc, dw0 + dw_ref, dtype, "dw")
    if bias:
        assert db_out is db_acc
        assert_close(db_acc, db0 + db_ref, dtype, "db")
    else:
        assert db_out is None


# Every kernel x stride x padding; dilation and groups cycle through their values so that
# each appears with every kernel. C = 4 gives the GEMM path (C/groups*KH*KW > 32) and the
# direct small-K path (depthwise, 1x1, groups=2 with 3x5).
KERNELS = [1, 3, 5, (3, 5)]
STRIDES = [1, 2, (1, 2)]
PADDINGS = [0, 1, 2, (2, 1)]
CASES = []
for i, (k, s, p) in enumerate(itertools.product(KERNELS, STRIDES, PADDINGS)):
    CASES.append((k, s, p, [1, 2][i % 2], [1, 2, 4][(i // 2) % 3]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", CASES)
def test_conv2d_matches_reference(isa, threads, rng, dtype, kernel, stride, padding, dilation, groups):
    check_conv(rng, dtype, 2, 4, 11, 13, 6 if groups != 4 else 8, kernel, stride, padding, dilation, groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    # (N, C, H, W, OC, kernel, stride, padding, dilation, groups, bias)
    (1, 3, 7, 5, 5, 3, 1, 1, 1, 1, True),          # batch 1: the GEMM threads inside
    (3, 1, 9, 17, 32, 3, 1, 1, 1, 1, True),        # first layer: one input channel
    (2, 40, 5, 7, 9, 1, 1, 0, 1, 1, True),         # 1x1 stride 1: the input is its own im2col matrix
    (2, 40, 5, 7, 9, 1, 2, 0, 1, 1, False),        # 1x1 strided, no bias
    (1, 64, 33, 31, 3, 3, 1, 1, 1, 1, True),       # several row tiles per image
    (5, 6, 9, 9, 12, 3, 1, 1, 1, 6, True),         # depthwise with channel multiplier 2
    (2, 3, 1, 1, 4, 1, 1, 0, 1, 1, True),          # 1x1 image
    (2, 2, 1, 1, 3, 3, 1, 1, 1, 1, True),          # 1x1 image, padded 3x3 kernel
    (2, 3, 4, 4, 2, 4, 1, 0, 1, 1, True),          # kernel the size of the input: 1x1 output
    (17, 5, 6, 7, 17, 3, (2, 1), (1, 2), (2, 1), 1, True),  # more images than weight chunks
    # stride-2 columns wide enough for whole vectors of even lanes (any ISA), and their row ends
    (2, 8, 9, 37, 11, 3, 2, 1, 1, 1, True),        # 19 output columns, the first one padded
    (2, 5, 7, 33, 6, 3, (1, 2), (0, 2), (1, 2), 1, False),  # dilated columns, 2 padded each side
    (3, 40, 5, 34, 9, 1, 2, 0, 1, 1, True),        # 1x1 stride 2 (ResNet's projection): 17 columns
    # 3x3 stride 1: Winograd F(2x2, 3x3), odd sizes (partial tiles), every padding it takes
    (3, 16, 9, 7, 24, 3, 1, 2, 1, 1, True),
    (2, 5, 6, 8, 4, 3, 1, (0, 2), 1, 1, True),
    (2, 8, 5, 133, 6, 3, 1, 1, 1, 1, True),        # more tiles per row than one chunk
    (9, 32, 13, 11, 8, 3, 1, 1, 1, 1, False),      # several tile rows per block, images split over chunks
    (6, 16, 4, 3, 8, 3, 1, 1, 1, 1, True),         # tile rows much narrower than a vector, many per block
    # 3x3 stride 1 where F(4x4, 3x3) saves >= 40% of F(2x2)'s products: partial tiles, every vector width
    (2, 5, 15, 70, 6, 3, 1, 1, 1, 1, True),        # 18 tiles per row: a whole vector and a partial one
    (3, 4, 8, 8, 5, 3, 1, 1, 1, 1, True),          # 2 tiles per row: quarter-width vectors
    (2, 7, 13, 13, 4, 3, 1, 2, 1, 1, False),       # padding 2: 15x15 outputs, the last tiles 3 wide
    (4, 6, 23, 28, 3, 3, 1, 1, 1, 1, True),        # 7 tiles per row: half width
    # Winograd products: the micro-kernel on the planes (weight planes up to 256 KiB; OC and C not whole
    # micro-tiles) and gk::gemm beyond (181 x 185 planes in float64, 260 x 258 in both dtypes)
    (3, 64, 8, 8, 64, 3, 1, 1, 1, 1, True),
    (2, 19, 10, 9, 13, 3, 1, 1, 1, 1, True),
    (2, 70, 9, 10, 72, 3, 1, 1, 1, 1, True),
    (2, 181, 5, 6, 185, 3, 1, 1, 1, 1, True),
    (1, 260, 3, 4, 258, 3, 1, 1, 1, 1, False),
    # Winograd blocks at least C OC / (C + OC) tiles deep (twice that for dW): one block over several
    # images (F(2x2) and F(4x4)), the weight gradient's chunks shorter than a block; a 1x1 image
    (11, 48, 5, 6, 40, 3, 1, 1, 1, 1, True),
    (7, 40, 8, 8, 36, 3, 1, 1, 1, 1, True),
    (1, 5, 1, 1, 4, 3, 1, 1, 1, 1, True),
    # small-K with stride-1 columns: direct kernels on a padded copy of the image
    (3, 2, 7, 40, 7, 3, 1, 1, 1, 1, True),         # 18 taps (two tap blocks), rows of 2.5 vectors, odd rows and OC
    (2, 2, 9, 33, 5, (3, 5), (2, 1), (1, 2), (2, 1), 1, False),  # 30 taps, row stride 2, dilated rows, no bias
    # rows of whole vectors only (the last vector not moved back) and one column past them, for 4, 8 and 16 lanes
    (2, 1, 3, 8, 5, 3, 1, 1, 1, 1, True),
    (2, 1, 5, 9, 6, 3, 1, 1, 1, 1, True),
    (2, 1, 4, 16, 3, 3, 1, 1, 1, 1, False),
    (3, 1, 6, 17, 4, 3, 1, 1, 1, 1, True),
    (2, 1, 28, 28, 32, 3, 1, 1, 1, 1, True),       # the quickstart CNN's first layer
    (1, 1, 520, 521, 2, 3, 1, 1, 1, 1, True),      # padded copy over its budget: im2col tiles instead
])
def test_conv2d_edge_shapes(isa, threads, rng, dtype, shape):
    check_conv(rng, dtype, *shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 8])  # small-K and Winograd paths
def test_conv2d_empty_batch(dtype, C):
    x = np.zeros((0, C, 5, 5), dtype)
    w = np.ones((4, C, 3, 3), dtype)
    y = ops.conv2d_forward(x, w, np.ones(4, dtype), padding=1)
    assert y.shape == (0, 4, 5, 5)
    dw = np.full(w.shape, 2.0, dtype)
    dx, dw_out, db = ops.conv2d_backward(y, x, w, padding=1, dweight=dw)
    assert dx.shape == x.shape and np.all(dw == 2.0) and np.all(db == 0.0)


@pytest.mark.parametrize("H,W", [(9, 8), (16, 15)])  # Winograd F(2x2) and F(4x4) outputs for C = 8
def test_conv2d_relu_epilogue(isa, rng, H, W):
    for C in (1, 8):  # small-K and Winograd paths
        x = rng.standard_normal((2, C, H, W)).astype(np.float32)
        w = rng.standard_normal((8, C, 3, 3)).astype(np.float32)
        b = rng.standard_normal(8).astype(np.float32)
        y_ref, _ = ref_conv(x, w, b, 1, 1, 1, 1)
        y = ops.conv2d_forward(x, w, b, padding=1, activation="relu")
        assert_close(y, np.maximum(y_ref, 0), np.float32, "relu(y)")
    with pytest.raises(ValueError, match="activation"):
        ops.conv2d_forward(x, w, b, activation="tanh")


@pytest.mark.parametrize("C,OC,groups,H,W", [(1, 16, 1, 12, 10), (1, 16, 1, 28, 28), (16, 16, 1, 12, 10),
                                             (16, 16, 1, 16, 15), (8, 16, 8, 12, 10), (96, 100, 1, 6, 7),
                                             (72, 80, 1, 8, 8)])
def test_conv2d_bits_do_not_depend_on_threads(isa, rng, C, OC, groups, H, W):
    # (the last two: Winograd blocks of several images, 39 KiB and 23 KiB weight planes)
    x = rng.standard_normal((19, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    dy = rng.standard_normal((19, OC, H, W)).astype(np.float32)
    results = []
    for n in (1, 2):
        gk.set_num_threads(n)
        y = ops.conv2d_forward(x, w, b, padding=1, groups=groups)
        results.append((y,) + ops.conv2d_backward(dy, x, w, padding=1, groups=groups))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_conv2d_skips_what_is_not_needed(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    dy = rng.standard_normal((2, 4, 4, 4))
    _, backward = ref_conv(x, w, None, 1, 0, 1, 1)
    dx_ref, dw_ref, db_ref = backward(dy)
    dx, dw, db = ops.conv2d_backward(dy, x, w, need_dx=False, need_dbias=False)
    assert dx is None and db is None
    assert_close(dw, dw_ref, np.float64, "dw")
    dx, dw, db = ops.conv2d_backward(dy, x, w, need_dweight=False)
    assert dw is None
    assert_close(dx, dx_ref, np.float64, "dx")
    assert_close(db, db_ref, np.float64, "db")
    assert_close(ops.conv2d_backward_input(dy, x, w), dx_ref, np.float64, "dx")
    dw2, db2 = ops.conv2d_backward_weight(dy, x, w)
    assert_close(dw2, dw_ref, np.float64, "dw")
    assert_close(db2, db_ref, np.float64, "db")


def test_conv2d_accepts_non_contiguous_input(rng):
    x = rng.standard_normal((2, 5, 8, 9)).astype(np.float32)[:, ::2, :, ::-1]
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y_ref, _ = ref_conv(x, w, None, 1, 1, 1, 1)
    assert_close(ops.conv2d_forward(x, w, None, 1, 1), y_ref, np.float32, "y")


# ---- bad input ---------------------------------------------------------------------------------

def _xw(dtype=np.float32):
    return np.zeros((2, 4, 6, 6), dtype), np.zeros((8, 4, 3, 3), dtype)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=np.zeros((4, 6, 6), np.float32)), r"x: expected a 4-D array .* got 3-D array of shape \(4, 6, 6\)"),
    (dict(weight=np.zeros((8, 4, 3), np.float32)), r"weight: expected a 4-D array .* got 3-D"),
    (dict(weight=np.zeros((8, 3, 3, 3), np.float32)), r"weight: expected shape\[1\] = in_channels/groups = 4/1 = 4"),
    (dict(weight=np.zeros((8, 4, 9, 3), np.float32)), r"kernel_size: expected an effective kernel height .* 6 \+ 2\*0 = 6, got 9"),
    (dict(weight=np.zeros((8, 4, 3, 3), np.float32), dilation=4), r"kernel_size: .* got 9"),
    (dict(groups=3), r"groups: expected a divisor of in_channels \(4\) and out_channels \(8\), got 3"),
    (dict(groups=0), r"conv2d_forward: groups: expected an integer >= 1, got 0"),
    (dict(weight=np.zeros((6, 1, 3, 3), np.float32), groups=4), r"groups: expected a divisor .* out_channels \(6\), got 4"),
    (dict(stride=0), r"conv2d_forward: stride: expected an integer >= 1, got 0"),
    (dict(stride=(1, -2)), r"conv2d_forward: stride: expected an integer >= 1, got -2"),
    (dict(padding=-1), r"conv2d_forward: padding: expected an integer >= 0, got -1"),
    (dict(dilation=(0, 1)), r"conv2d_forward: dilation: expected an integer >= 1, got 0"),
    (dict(weight=np.zeros((8, 4, 0, 3), np.float32)), r"weight: expected a kernel of positive size"),
    (dict(weight=np.zeros((0, 4, 3, 3), np.float32)), r"weight: expected at least 1 output channel"),
    (dict(x=np.zeros((2, 0, 6, 6), np.float32), weight=np.zeros((8, 0, 3, 3), np.float32)), r"x: expected at least 1 channel"),
    (dict(x=np.zeros((2, 4, 0, 6), np.float32)), r"kernel_size: .*height .* got 3"),
    (dict(bias=np.zeros(7, np.float32)), r"bias: expected shape \(8,\), got shape \(7,\)"),
    (dict(stride=(1, 2, 3)), r"stride: expected an int or a pair of ints, got 3 values"),
])
def test_conv2d_forward_rejects_bad_input(kwargs, match):
    x, w = _xw()
    args = dict(x=x, weight=w, bias=None, stride=1, padding=0, dilation=1, groups=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ops.conv2d_forward(**args)


def test_conv2d_type_errors():
    x, w = _xw()
    with pytest.raises(TypeError, match="weight: expected dtype float32, got float64"):
        ops.conv2d_forward(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray of float32 or float64, got int64"):
        ops.conv2d_forward(x.astype(np.int64), w)
    with pytest.raises(TypeError, match="stride: expected an int or a pair of ints"):
        ops.conv2d_forward(x, w, stride=1.5)
    with pytest.raises(TypeError, match="groups: expected an int"):
        ops.conv2d_forward(x, w, groups="2")


def test_conv2d_backward_rejects_bad_input():
    x, w = _xw()
    dy = np.zeros((2, 8, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"dy: expected shape \(2, 8, 4, 4\), got shape \(2, 8, 4, 5\)"):
        ops.conv2d_backward(np.zeros((2, 8, 4, 5), np.float32), x, w)
    with pytest.raises(TypeError, match="dy: expected dtype float32"):
        ops.conv2d_backward(dy.astype(np.float64), x, w)
    with pytest.raises(ValueError, match=r"dweight: expected shape \(8, 4, 3, 3\)"):
        ops.conv2d_backward(dy, x, w, dweight=np.zeros((8, 4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="dweight: expected a C-contiguous array"):
        ops.conv2d_backward(dy, x, w, dweight=np.zeros((8, 4, 3, 6), np.float32)[..., ::2])
    readonly = np.zeros(8, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="dbias: expected a writeable array"):
        ops.conv2d_backward(dy, x, w, dbias=readonly)
    with pytest.raises(ValueError, match=r"dbias: expected shape \(8,\)"):
        ops.conv2d_backward(dy, x, w, dbias=np.zeros(9, np.float32))


# ---- gk.nn.Conv2d ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_module_matches_reference_and_accumulates(rng, dtype):
    gk.manual_seed(0)
    m = gk.nn.Conv2d(4, 6, (3, 5), stride=(1, 2), padding=(2, 1), dilation=2, groups=2).to(dtype)
    x = rng.standard_normal((3, 4, 10, 11)).astype(dtype)
    y_ref, backward = ref_conv(x, m.weight.data, m.bias.data, (1, 2), (2, 1), 2, 2)
    y = m(x)
    assert_close(y, y_ref, dtype, "y")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref, dw_ref, db_ref = backward(dy)
    assert_close(m.backward(dy), dx_ref, dtype, "dx")
    assert_close(m.weight.grad, dw_ref, dtype, "weight.grad")
    assert_close(m.bias.grad, db_ref, dtype, "bias.grad")
    m.backward(dy)  # gradients add up until zero_grad
    assert_close(m.weight.grad, 2 * dw_ref, dtype, "weight.grad")
    assert_close(m.bias.grad, 2 * db_ref, dtype, "bias.grad")
    m.zero_grad()
    assert not m.weight.grad.any() and not m.bias.grad.any()


@pytest.mark.parametrize("cin,cout,k,groups", [(6, 8, 3, 2), (3, 8, 3, 1), (8, 16, (3, 5), 4), (1, 32, 3, 1)])
def test_conv2d_module_init_as_pytorch(cin, cout, k, groups):
    gk.manual_seed(3)
    m = gk.nn.Conv2d(cin, cout, k, groups=groups)
    kh, kw = _pair(k)
    assert m.weight.shape == (cout, cin // groups, kh, kw) and m.bias.shape == (cout,)
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32
    bound = 1 / np.sqrt(cin // groups * kh * kw)  # kaiming_uniform(a=sqrt(5)); fan_in counts groups
    for p in (m.weight.data, m.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    assert abs(m.weight.data.mean()) < 0.1 * bound
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    gk.manual_seed(3)
    np.testing.assert_array_equal(gk.nn.Conv2d(cin, cout, k, groups=groups).weight.data, m.weight.data)
    nb = gk.nn.Conv2d(cin, cout, k, groups=groups, bias=False)
    assert nb.bias is None and [n for n, _ in nb.named_parameters()] == ["weight"]


def test_conv2d_module_repr():
    assert repr(gk.nn.Conv2d(6, 8, 3, groups=2)) == "Conv2d(6, 8, kernel_size=(3, 3), stride=(1, 1), groups=2)"
    assert repr(gk.nn.Conv2d(1, 2, 3, padding=1, dilation=2, bias=False)) == \
        "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2), bias=False)"


def test_conv2d_module_first_layer_skips_input_grad(rng):
    m = gk.nn.Conv2d(1, 4, 3, padding=1)
    x = rng.standard_normal((2, 1, 7, 7)).astype(np.float32)
    y = m(x)
    _, backward = ref_conv(x, m.weight.data, m.bias.data, 1, 1, 1, 1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert m.backward(dy, input_grad=False) is None
    _, dw_ref, db_ref = backward(dy)
    assert_close(m.weight.grad, dw_ref, np.float32, "weight.grad")
    assert_close(m.bias.grad, db_ref, np.float32, "bias.grad")


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((0, 4, 3), {}, ValueError, "Conv2d: in_channels: expected an integer >= 1, got 0"),
    ((4, -1, 3), {}, ValueError, "Conv2d: out_channels: expected an integer >= 1, got -1"),
    ((4, 6, 3), dict(groups=4), ValueError, r"groups: expected a divisor of in_channels \(4\) and out_channels \(6\)"),
    ((4, 4, 0), {}, ValueError, "Conv2d: kernel_size: expected an integer >= 1, got 0"),
    ((4, 4, 3), dict(stride=0), ValueError, "Conv2d: stride: expected an integer >= 1, got 0"),
    ((4, 4, 3), dict(padding=-1), ValueError, "Conv2d: padding: expected an integer >= 0, got -1"),
    ((4, 4, 3), dict(dilation=(1, 0)), ValueError, "Conv2d: dilation: expected an integer >= 1, got 0"),
    ((4, 4, 2.5), {}, TypeError, "kernel_size: expected an int or a pair of ints"),
])
def test_conv2d_module_rejects_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        gk.nn.Conv2d(*args, **kwargs)


def test_conv2d_module_rejects_bad_input(rng):
    m = gk.nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(np.zeros((1, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: input: expected 3 channels \(shape\[1\]\), got shape \(1, 2, 5, 5\)"):
        m(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="expected a 4-D array"):
        m(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(TypeError, match="expected dtype float32"):
        m(np.zeros((1, 3, 5, 5), np.float64))
    with pytest.raises(ValueError, match="kernel_size"):
        m(np.zeros((1, 3, 2, 5), np.float32))
    y = m(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(1, 4, 3, 3\)"):
        m.backward(np.zeros((1, 4, 3, 4), np.float32))
    with gk.no_grad():
        m(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(RuntimeError, match="no cached forward"):
        m.backward(np.zeros_like(y))
