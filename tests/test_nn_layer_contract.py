"""Every layer of shared/API.md against one contract.

For each module: forward against a float64 NumPy reference, backward by gk.gradcheck (float64,
in training and eval mode), float32 forward and backward against float64, state_dict round
trips (through gk.save/gk.load) and rejection of mismatched shapes, to(dtype), backward without
a cached forward or after no_grad (RuntimeError), a dy of the wrong shape (ValueError), an input
of the wrong dtype (TypeError) or rank/shape (ValueError), and gradients accumulating across two
backward calls. What is particular to one layer (Dropout's mask, BatchNorm's running statistics,
default initialization, argument checks, the losses) is tested in that layer's own file. A layer
that has not landed in gk.nn is skipped, naming it.
"""
import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

import gradkit as gk
from nn_helpers import assert_close, check_backward_contract
from test_nn_pooling import ref_adaptive_avg_pool

nn = gk.nn
_erf = np.vectorize(math.erf)


# -- float64 NumPy references ----------------------------------------------------------------
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))).reshape(n, groups, cg, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(groups, oc // groups, cg, kh, kw)
    out = np.zeros((n, groups, oc // groups, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            out += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, i, j])
    out = out.reshape(n, oc, oh, ow)
    return out if b is None else out + b[None, :, None, None]


def ref_pool(x, kernel, stride, padding, mode):
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(stride if stride is not None else kernel)
    n, c, h, wd = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    wins = np.stack([xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                     for i in range(kh) for j in range(kw)])
    return wins.max(axis=0) if mode == "max" else wins.sum(axis=0) / (kh * kw)


def _affine(y, m, axis_shape):
    if getattr(m, "weight", None) is None:
        return y
    return y * m.weight.data.astype(np.float64).reshape(axis_shape) + m.bias.data.astype(np.float64).reshape(axis_shape)


def ref_batchnorm(m, x, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if m.training or getattr(m, "running_mean", None) is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, var = m.running_mean.astype(np.float64), m.running_var.astype(np.float64)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return _affine(y, m, shape)


def ref_layernorm(m, x, normalized_shape, eps=1e-5):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return _affine((x - mean) / np.sqrt(var + eps), m, normalized_shape)


def ref_groupnorm(m, x, groups, eps=1e-5):
    g = x.reshape(x.shape[0], groups, -1)
    y = ((g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + eps)).reshape(x.shape)
    return _affine(y, m, (1, -1) + (1,) * (x.ndim - 2))


def ref_instancenorm(m, x, eps=1e-5):
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return _affine((x - mean) / np.sqrt(var + eps), m, (1, -1, 1, 1))


def _w(m, name="weight"):
    p = getattr(m, name)
    return None if p is None else p.data.astype(np.float64)


def ref_linear(m, x):
    y = x @ _w(m).T
    return y if m.bias is None else y + _w(m, "bias")


def ref_cnn_block(m, x):
    conv = lambda c, h: ref_conv2d(h, _w(c), _w(c, "bias"), padding=1)  # noqa: E731
    h = np.maximum(ref_batchnorm(m[0][1], conv(m[0][0], x)), 0)
    h = h + ref_groupnorm(m[1].block[1], conv(m[1].block[0], h), 2)
    return ref_linear(m[4], ref_pool(h, 2, None, 0, "max").reshape(len(x), -1))


ACTIVATIONS = {
    "Sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, 0),
    "LeakyReLU": lambda x: np.where(x > 0, x, 0.01 * x),
    "ELU": lambda x: np.where(x > 0, x, np.expm1(x)),
    "GELU": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
}


# -- the table -----------------------------------------------------------------------------------
@dataclass
class Spec:
    id: str
    make: object  # () -> Module (float32, default init)
    shape: tuple  # input shape
    ref: object  # (module in float64, x float64) -> y float64
    needs: tuple = ()  # gk.nn names the module is built from
    inputs: str = "smooth"  # smooth | away (|x| >= 0.1, for kinks at 0) | distinct (no ties, for max)
    bad_rank: tuple = None  # an input shape of a rank the layer rejects
    bad_shape: tuple = None  # the right rank, a wrong size (channels, features)
    extra: dict = field(default_factory=dict)


def _conv(cin, cout, k, stride=1, padding=0, dilation=1, groups=1, bias=True, shape=(2, 4, 7, 7), bad=None):
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)
    return Spec(
        f"Conv2d({cin},{cout},{k},{','.join(f'{a}={v}' for a, v in args.items())})",
        lambda: nn.Conv2d(cin, cout, k, **args), shape,
        lambda m, x: ref_conv2d(x, _w(m), _w(m, "bias"), stride, padding, dilation, groups), ("Conv2d",),
        bad_rank=(4, 7), bad_shape=bad or (shape[0], cin + 1) + shape[2:])


def _act(name, shape=(3, 7), **kwargs):
    ref = ACTIVATIONS[name]
    if name == "LeakyReLU" and kwargs:
        ref = lambda x, s=kwargs["negative_slope"]: np.where(x > 0, x, s * x)  # noqa: E731
    if name == "ELU" and kwargs:
        ref = lambda x, a=kwargs["alpha"]: np.where(x > 0, x, a * np.expm1(x))  # noqa: E731
    kink = name in ("ReLU", "LeakyReLU", "ELU")
    return Spec(f"{name}({kwargs or ''}){shape}", lambda: getattr(nn, name)(**kwargs), shape, lambda m, x: ref(x),
                (name,), inputs="away" if kink else "smooth")


SPECS = [
    Spec("Linear(6,4)", lambda: nn.Linear(6, 4), (5, 6), ref_linear, ("Linear",), bad_rank=(), bad_shape=(5, 7)),
    Spec("Linear(6,4,bias=False)", lambda: nn.Linear(6, 4, bias=False), (5, 6), ref_linear, ("Linear",),
         bad_shape=(5, 5)),
    _conv(4, 3, 3),
    _conv(4, 6, 3, stride=2, padding=1),
    _conv(4, 4, (2, 3), padding=(1, 0), dilation=(2, 1)),
    _conv(4, 6, 3, padding=1, groups=2, bias=False),
    _conv(4, 5, 1),
    _conv(1, 3, 3, padding=1, shape=(2, 1, 6, 6)),
    Spec("MaxPool2d(2)", lambda: nn.MaxPool2d(2), (2, 3, 6, 6), lambda m, x: ref_pool(x, 2, None, 0, "max"),
         ("MaxPool2d",), inputs="distinct", bad_rank=(6, 6)),
    Spec("MaxPool2d(3,2,1)", lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6),
         lambda m, x: ref_pool(x, 3, 2, 1, "max"), ("MaxPool2d",), inputs="distinct", bad_rank=(7, 6)),
    Spec("AvgPool2d(2)", lambda: nn.AvgPool2d(2), (2, 3, 7, 6), lambda m, x: ref_pool(x, 2, None, 0, "avg"),
         ("AvgPool2d",), bad_rank=(7, 6)),
    Spec("AvgPool2d(3,2,1)", lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 6, 7),
         lambda m, x: ref_pool(x, 3, 2, 1, "avg"), ("AvgPool2d",), bad_rank=(6, 7)),
    Spec("GlobalAvgPool2d", lambda: nn.GlobalAvgPool2d(), (2, 3, 5, 4), lambda m, x: x.mean(axis=(2, 3)),
         ("GlobalAvgPool2d",), bad_rank=(3, 5)),
    Spec("AdaptiveAvgPool2d((3,4))", lambda: nn.AdaptiveAvgPool2d((3, 4)), (2, 3, 5, 7),
         lambda m, x: ref_adaptive_avg_pool(x, 3, 4)[0], ("AdaptiveAvgPool2d",), bad_rank=(3, 5)),
    Spec("Flatten", lambda: nn.Flatten(), (2, 3, 4, 5), lambda m, x: x.reshape(2, -1), ("Flatten",), bad_rank=(3,)),
    _act("Sigmoid"), _act("Tanh"), _act("ReLU"), _act("ReLU", (2, 3, 4, 5)), _act("LeakyReLU"),
    _act("LeakyReLU", negative_slope=0.2), _act("ELU"), _act("ELU", alpha=0.5), _act("GELU"),
    Spec("Dropout(0.3) eval", lambda: nn.Dropout(0.3).eval(), (4, 9), lambda m, x: x, ("Dropout",)),
    Spec("BatchNorm1d(5)", lambda: nn.BatchNorm1d(5), (8, 5), ref_batchnorm, ("BatchNorm1d",),
         bad_rank=(2, 5, 3, 3), bad_shape=(8, 6)),
    Spec("BatchNorm1d(5) (N,C,L)", lambda: nn.BatchNorm1d(5), (4, 5, 3), ref_batchnorm, ("BatchNorm1d",),
         bad_shape=(4, 4, 3)),
    Spec("BatchNorm1d(5,affine=False)", lambda: nn.BatchNorm1d(5, affine=False), (8, 5), ref_batchnorm,
         ("BatchNorm1d",)),
    Spec("BatchNorm2d(3)", lambda: nn.BatchNorm2d(3), (4, 3, 5, 5), ref_batchnorm, ("BatchNorm2d",),
         bad_rank=(4, 3), bad_shape=(4, 2, 5, 5)),
    Spec("BatchNorm2d(3,track_running_stats=False)", lambda: nn.BatchNorm2d(3, track_running_stats=False),
         (4, 3, 3, 3), ref_batchnorm, ("BatchNorm2d",)),
    Spec("LayerNorm(6)", lambda: nn.LayerNorm(6), (4, 6), lambda m, x: ref_layernorm(m, x, (6,)), ("LayerNorm",),
         bad_shape=(4, 5)),
    Spec("LayerNorm((3,4))", lambda: nn.LayerNorm((3, 4)), (2, 5, 3, 4), lambda m, x: ref_layernorm(m, x, (3, 4)),
         ("LayerNorm",), bad_rank=(4,), bad_shape=(2, 5, 4, 3)),
    Spec("LayerNorm(6,elementwise_affine=False)", lambda: nn.LayerNorm(6, elementwise_affine=False), (4, 6),
         lambda m, x: ref_layernorm(m, x, (6,)), ("LayerNorm",)),
    Spec("GroupNorm(2,6)", lambda: nn.GroupNorm(2, 6), (3, 6, 4, 4), lambda m, x: ref_groupnorm(m, x, 2),
         ("GroupNorm",), bad_shape=(3, 4, 4, 4)),
    Spec("GroupNorm(3,6,affine=False)", lambda: nn.GroupNorm(3, 6, affine=False), (3, 6, 2, 5),
         lambda m, x: ref_groupnorm(m, x, 3), ("GroupNorm",)),
    Spec("InstanceNorm2d(3)", lambda: nn.InstanceNorm2d(3), (2, 3, 5, 4), ref_instancenorm, ("InstanceNorm2d",),
         bad_rank=(2, 3)),
    Spec("InstanceNorm2d(3,affine=True)", lambda: nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 4), ref_instancenorm,
         ("InstanceNorm2d",), bad_rank=(2, 3)),
    Spec("Sequential(Linear,Tanh,Linear)", lambda: nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), (4, 6),
         lambda m, x: ref_linear(m[2], np.tanh(ref_linear(m[0], x))), ("Sequential", "Linear", "Tanh"),
         bad_shape=(4, 5)),
    Spec("Residual(Sequential(Linear,Tanh))", lambda: nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.Tanh())), (4, 5),
         lambda m, x: x + np.tanh(ref_linear(m.block[0], x)), ("Residual", "Sequential", "Linear", "Tanh"),
         bad_shape=(4, 6)),
    # No bias in the conv before the batch norm: the norm cancels it, its exact gradient is 0 and
    # float32 leaves rounding noise there with no scale to compare with (conv biases: the specs above).
    Spec("nested CNN block", lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.GroupNorm(2, 4))),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3)), (3, 2, 6, 6), lambda m, x: ref_cnn_block(m, x),
        ("Sequential", "Residual", "Conv2d", "BatchNorm2d", "ReLU", "GroupNorm", "MaxPool2d", "Flatten", "Linear"),
        bad_shape=(3, 3, 6, 6)),
]
IDS = [s.id for s in SPECS]


# -- helpers ------------------------------------------------------------------------------------
def built(spec, dtype=np.float32, seed=0):
    """The module (default init, then every parameter and float buffer perturbed), or a skip."""
    missing = [n for n in spec.needs if not hasattr(nn, n)]
    if missing:
        pytest.skip(f"gk.nn.{', gk.nn.'.join(missing)} has not landed")
    gk.manual_seed(seed)
    m = spec.make().to(dtype)
    rng = np.random.default_rng(seed + 1)
    for p in m.parameters():
        p.data[...] += rng.uniform(-0.5, 0.5, p.shape)
    for name, b in m.named_buffers():
        if isinstance(b, np.ndarray) and b.dtype.kind == "f":
            b[...] = b * rng.uniform(0.5, 1.5, b.shape) if "var" in name else b + rng.uniform(-0.5, 0.5, b.shape)
    return m


def make_input(spec, dtype=np.float64, seed=2, shape=None):
    rng = np.random.default_rng(seed)
    shape = spec.shape if shape is None else shape
    if spec.inputs == "away":
        x = rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    elif spec.inputs == "distinct":
        x = rng.permutation(np.linspace(-1, 1, int(np.prod(shape)))).reshape(shape)
    else:
        x = rng.uniform(-1, 1, shape)
    return x.astype(dtype)


def has_params(m):
    return len(m.parameters()) > 0


# -- the contract, module by module ----------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_forward_matches_numpy_reference_in_float64(spec):
    m = built(spec, np.float64)
    x = make_input(spec)
    y = m(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    assert_close(y, spec.ref(m, x), np.float64, f"{spec.id} forward", 10)
    if spec.id.startswith(("BatchNorm", "Dropout")) or "CNN" in spec.id:
        m.eval()
        assert_close(m(x), spec.ref(m, x), np.float64, f"{spec.id} forward (eval)", 10)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradcheck(spec, mode):
    m = built(spec, np.float64)
    m.train(mode == "train")
    assert gk.gradcheck(m, make_input(spec))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_float32_matches_float64_forward_and_backward(spec, isa, threads):
    m32 = built(spec, np.float32)
    m64 = copy.deepcopy(m32).double()
    x = make_input(spec, np.float32)
    dy = make_input(spec, np.float32, seed=3, shape=m64(x.astype(np.float64)).shape)
    y64 = m64(x.astype(np.float64))
    dx64 = m64.backward(dy.astype(np.float64))
    y32 = m32(x)
    dx32 = m32.backward(dy)
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    # Both runs start from the same float32 values, so the difference is float32 rounding alone.
    # No reduction in these layers sums more terms than the input has entries (x.size): a sum of
    # L terms is off by at most L u times the sum of their magnitudes, which for these tensors stays
    # within a few times their largest entry (measured: at most 3.6 eps x the largest entry, for the
    # nested block's weight gradients, on generic and AVX2). Bound: (x.size + 1) eps x the largest
    # entry of each tensor (13 to 217 eps here), where it was 20-800x (2e-5 + 2e-4 |value|).
    length = x.size
    check_float32(y32, y64, length, f"{spec.id} y")
    check_float32(dx32, dx64, length, f"{spec.id} dx")
    for (name, p32), (_, p64) in zip(m32.named_parameters(), m64.named_parameters()):
        assert p32.grad.dtype == np.float32
        check_float32(p32.grad, p64.grad, length, f"{spec.id} {name}.grad")


def check_float32(a32, a64, length, what):
    """a32 within (length + 1) float32 eps of a64's largest |entry|, entry by entry."""
    assert a32.shape == a64.shape, f"{what}: shape {a32.shape} != {a64.shape}"
    if a64.size == 0:
        return
    bound = (length + 1) * np.finfo(np.float32).eps * np.max(np.abs(a64))
    err = np.max(np.abs(a32.astype(np.float64) - a64))
    assert err <= bound, f"{what}: max difference {err:.3g} > {bound:.3g} ({err / bound:.2g}x the bound)"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_round_trip_through_save_load(spec, tmp_path):
    src = built(spec, seed=4)
    src(make_input(spec, np.float32))  # a training forward moves running statistics
    path = tmp_path / "state.npz"
    gk.save({"model": src.state_dict()}, path)
    dst = built(spec, seed=5)
    dst.load_state_dict(gk.load(path)["model"])
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=k)
    x = make_input(spec, np.float32, seed=6)
    np.testing.assert_array_equal(src.eval()(x), dst.eval()(x))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_load_state_dict_rejects_mismatched_shapes(spec):
    m = built(spec, seed=4)
    sd = m.state_dict()
    if not sd:
        assert m.parameters() == []
        return
    before = m.state_dict()
    key = list(sd)[-1]
    bad = {k: np.zeros_like(v) for k, v in sd.items()}
    bad[key] = np.zeros(np.shape(sd[key]) + (2,), dtype=sd[key].dtype)
    with pytest.raises(ValueError, match=rf"{key}: expected shape"):
        m.load_state_dict(bad)
    for k, v in m.state_dict().items():  # all or nothing
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_to_dtype(spec):
    m = built(spec)
    assert m.double() is m
    for p in m.parameters():
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    for name, b in m.named_buffers():
        if isinstance(b, np.ndarray) and b.dtype.kind == "f":
            assert b.dtype == np.float64, name
    assert m(make_input(spec)).dtype == np.float64
    assert m.float() is m
    assert all(p.dtype == np.float32 for p in m.parameters())
    assert m(make_input(spec, np.float32)).dtype == np.float32


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_wrong_input_dtype_raises_type_error(spec):
    m = built(spec)
    if has_params(m):
        with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
            m(make_input(spec, np.float64))
    with pytest.raises(TypeError, match="int32"):
        m(make_input(spec, np.float64).astype(np.int32))


BAD = [s for s in SPECS if s.bad_rank is not None or s.bad_shape is not None]


@pytest.mark.parametrize("spec", BAD, ids=[s.id for s in BAD])
def test_wrong_input_rank_or_shape_raises_value_error(spec):
    m = built(spec)
    for shape in (spec.bad_rank, spec.bad_shape):
        if shape is None:
            continue
        with pytest.raises(ValueError) as info:
            m(np.ones(shape, dtype=np.float32))
        msg = str(info.value)
        # names what was expected and what came (the shape, or the rank for a wrong rank)
        assert "expect" in msg and (str(tuple(shape)) in msg or f"{len(shape)}-D" in msg or f"{len(shape)}D" in msg), msg


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_backward_before_forward_after_no_grad_and_wrong_dy(spec):
    m = built(spec)
    x = make_input(spec, np.float32)
    check_backward_contract(m, x)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_accumulate_across_two_backward_calls(spec):
    m = built(spec, np.float64)
    x = make_input(spec)
    m(x)
    dy = make_input(spec, seed=3, shape=m(x).shape)
    dx1 = m.backward(dy)
    once = [p.grad.copy() for p in m.parameters()]
    m(x)
    dx2 = m.backward(dy)
    np.testing.assert_allclose(dx2, dx1, rtol=1e-12, atol=1e-14)
    for (name, p), g in zip(m.named_parameters(), once):
        assert_close(p.grad, 2 * g, np.float64, f"{name}.grad after two backward calls")
    m.zero_grad()
    assert all(not p.grad.any() for p in m.parameters())


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_repr_is_readable(spec):
    m = built(spec)
    text = repr(m)
    assert text.startswith(type(m).__name__ + "(") and "object at 0x" not in text


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_no_grad_forward_keeps_no_cache_and_gives_the_same_output(spec):
    m = built(spec)
    x = make_input(spec, np.float32)
    m.eval()  # the same output twice (no dropout draw, no batch statistics)
    y = m(x)
    assert any(mod._cache is not None for mod in m.modules())
    with gk.no_grad():
        y2 = m(x)
    np.testing.assert_array_equal(y2, y)
    stale = [name or type(m).__name__ for name, mod in m.named_modules() if mod._cache is not None]
    assert not stale, f"modules still holding a forward cache after a no_grad forward: {stale}"


def _strided(a):
    """The same values as ``a`` in a non-contiguous view (every other element of a wider array)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] <= 1
    return view


def _misaligned(a):
    """The same values as ``a`` in a C-contiguous array whose address is not a multiple of its item size."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned or a.size == 0
    return view


@pytest.mark.parametrize("layout", [_strided, _misaligned], ids=["strided", "misaligned"])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_non_contiguous_input_and_gradient(spec, layout):
    m = built(spec, np.float64)
    x = make_input(spec)
    m.eval()  # deterministic: the two passes must agree
    y = m(x)
    dy = make_input(spec, seed=3, shape=y.shape)
    dx = m.backward(dy)
    grads = [p.grad.copy() for p in m.parameters()]
    m.zero_grad()
    y2 = m(layout(x))
    dx2 = m.backward(layout(dy))
    assert_close(y2, y, np.float64, f"{spec.id} y from a {layout.__name__[1:]} input")
    assert_close(dx2, dx, np.float64, f"{spec.id} dx from a {layout.__name__[1:]} dy")
    for (name, p), g in zip(m.named_parameters(), grads):
        assert_close(p.grad, g, np.float64, f"{spec.id} {name}.grad")


API_LAYERS = ["Module", "Parameter", "init", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten",
              "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Dropout", "BatchNorm1d", "BatchNorm2d",
              "LayerNorm", "GroupNorm", "InstanceNorm2d", "Sequential", "Residual", "CrossEntropyLoss", "MSELoss"]


def test_exports():
    assert len(set(nn.__all__)) == len(nn.__all__), "duplicates in gk.nn.__all__"
    assert all(hasattr(nn, name) for name in nn.__all__)
    landed = [name for name in API_LAYERS if hasattr(nn, name)]
    assert set(landed) <= set(nn.__all__), f"not in gk.nn.__all__: {set(landed) - set(nn.__all__)}"
    for name in ("gradcheck", "save", "load", "no_grad"):
        assert callable(getattr(gk, name)) and name in gk.__all__
    assert len(set(gk.__all__)) == len(gk.__all__), "duplicates in gk.__all__"
