"""gk.onnx.export: each layer and op, the quickstart CNN and user modules, run by onnxruntime
and compared with gradkit's eval-mode forward on batches of 1, 7 and 64; failures, the model's
state and the file left as they must be."""
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="gk.onnx.export needs the onnx package (pip install 'gradkit[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the exported models are checked by running them in onnxruntime")

import gradkit as gk  # noqa: E402
from gradkit import nn  # noqa: E402
from gradkit.nn import functional as F  # noqa: E402
from gradkit.examples.fashion_mnist import build_cnn  # noqa: E402

BATCHES = (1, 7, 64)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


def randomize_norms(model, rng):
    """Norm layers with weights, biases and running statistics away from 1 and 0 (else they would
    pass for identities)."""
    for m in model.modules():
        if not isinstance(m, NORMS):
            continue
        if m.weight is not None:
            m.weight.data[...] = 1 + 0.3 * rng.standard_normal(m.weight.shape)
            m.bias.data[...] = 0.3 * rng.standard_normal(m.bias.shape)
        if getattr(m, "running_mean", None) is not None:
            m.running_mean[...] = 0.3 * rng.standard_normal(m.running_mean.shape)
            m.running_var[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
            m.num_batches_tracked[...] = 17
    return model


def snapshot(model):
    """Every submodule's mode and every parameter's and buffer's bytes."""
    modes = [(name, m.training) for name, m in model.named_modules()]
    state = {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in model.state_dict().items()}
    return modes, state


def eval_forward(model, *xs):
    """gradkit's eval-mode outputs (a tuple), the model's modes put back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with gk.no_grad():
            y = model(*xs)
    finally:
        for m, training in modes:
            object.__setattr__(m, "training", training)
    return y if isinstance(y, tuple) else (y,)


def session(path, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])


def assert_close(got, want, what, tol=1e-5):
    """|got - want| <= tol * the largest |want| (the contract's bound)."""
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    scale = float(np.abs(want).max()) if want.size else 0.0
    err = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
    assert err <= tol * scale, f"{what}: max |onnxruntime - gradkit| = {err:.3g}, bound {tol} * {scale:.3g}"


def check_export(model, shapes, tmp_path, rng, opset=17, batches=BATCHES, dtype=np.float32, tol=1e-5):
    """Export with an example batch of 2; check_model; onnxruntime's outputs on each batch size
    against gradkit's eval forward; the model's modes and state untouched. Returns the ModelProto."""
    example = tuple(rng.standard_normal((2,) + s).astype(dtype) for s in shapes)
    before = snapshot(model)
    path = tmp_path / "model.onnx"
    assert gk.onnx.export(model, example[0] if len(example) == 1 else example, path, opset=opset) == path
    assert snapshot(model) == before
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = session(path)
    names = [i.name for i in sess.get_inputs()]
    for n in batches:
        xs = [rng.standard_normal((n,) + s).astype(dtype) for s in shapes]
        want = eval_forward(model, *xs)
        got = sess.run(None, dict(zip(names, xs)))
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"batch {n}, output {i}", tol)
    return proto


def op_types(proto):
    return [n.op_type for n in proto.graph.node]


# ---- the quickstart CNN ---------------------------------------------------------------------

def test_quickstart_cnn(tmp_path, rng):
    gk.manual_seed(0)
    model = randomize_norms(build_cnn(), rng)  # left in training mode: export runs in eval mode
    proto = check_export(model, [(1, 28, 28)], tmp_path, rng)
    assert op_types(proto) == ["Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "BatchNormalization", "Relu",
                               "MaxPool", "Flatten", "Gemm", "Relu", "Gemm"]
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = model.state_dict()
    assert set(stored) == {k for k in state if not k.endswith("num_batches_tracked")}
    for k, v in stored.items():  # named and shaped as the state_dict: weights as stored
        np.testing.assert_array_equal(v, state[k], err_msg=k)


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_quickstart_cnn_opsets(tmp_path, rng, opset):
    model = randomize_norms(build_cnn(), rng)
    proto = check_export(model, [(1, 28, 28)], tmp_path, rng, opset=opset, batches=(3,))
    assert proto.opset_import[0].version == opset



@pytest.mark.dataset
def test_example_export_flag(tmp_path, rng):
    """python examples/fashion_mnist.py --export model.onnx writes the trained quickstart CNN."""
    from gradkit.examples import fashion_mnist as example

    try:
        gk.datasets.load_fashion_mnist(download=False)
    except FileNotFoundError as e:
        if os.environ.get("GRADKIT_REQUIRE_DATASET") == "1":
            raise
        pytest.skip(f"Fashion-MNIST is not installed: {str(e).splitlines()[0]}")
    path = tmp_path / "model.onnx"
    out = example.main(["--epochs", "1", "--subset", "600", "--verbose", "0", "--out", str(tmp_path / "run"),
                        "--export", str(path)])
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    assert op_types(proto)[:3] == ["Conv", "BatchNormalization", "Relu"]
    x = rng.standard_normal((7, 1, 28, 28)).astype(np.float32)
    assert_close(session(path).run(None, {"input": x})[0], eval_forward(out["model"], x)[0], "the example's model")

# ---- each layer on its own --------------------------------------------------------------------

LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 8, 3), (3, 9, 11)),
    "conv_stride_padding": (lambda: nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2)), (3, 9, 11)),
    "conv_dilation_no_bias": (lambda: nn.Conv2d(3, 4, 3, dilation=2, bias=False), (3, 9, 11)),
    "conv_groups": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 7, 7)),
    "conv_depthwise": (lambda: nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4), (4, 7, 8)),
    "conv_1x1": (lambda: nn.Conv2d(5, 3, 1), (5, 4, 4)),
    "linear": (lambda: nn.Linear(13, 5), (13,)),
    "linear_no_bias": (lambda: nn.Linear(13, 5, bias=False), (13,)),
    "linear_3d": (lambda: nn.Linear(13, 5), (4, 13)),
    "linear_4d_no_bias": (lambda: nn.Linear(13, 5, bias=False), (2, 3, 13)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(6), (6,)),
    "batchnorm1d_3d": (lambda: nn.BatchNorm1d(6), (6, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(5), (5, 4, 6)),
    "batchnorm2d_no_affine": (lambda: nn.BatchNorm2d(5, affine=False), (5, 4, 6)),
    "batchnorm2d_eps": (lambda: nn.BatchNorm2d(5, eps=0.1), (5, 4, 6)),
    "syncbatchnorm": (lambda: nn.SyncBatchNorm(5), (5, 4, 6)),
    "relu": (nn.ReLU, (3, 5, 5)),
    "sigmoid": (nn.Sigmoid, (3, 5, 5)),
    "tanh": (nn.Tanh, (7,)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 5, 5)),
    "elu": (lambda: nn.ELU(0.7), (3, 5, 5)),
    "gelu": (nn.GELU, (3, 5, 5)),
    "maxpool": (lambda: nn.MaxPool2d(2), (3, 8, 9)),
    "maxpool_stride_padding": (lambda: nn.MaxPool2d(3, stride=2, padding=1), (3, 9, 10)),
    "maxpool_rect": (lambda: nn.MaxPool2d((2, 3), stride=(1, 2)), (2, 6, 7)),
    "avgpool": (lambda: nn.AvgPool2d(2), (3, 8, 9)),
    "avgpool_padding": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (3, 9, 10)),  # padded zeros count
    "global_avgpool": (nn.GlobalAvgPool2d, (3, 5, 7)),
    "flatten": (nn.Flatten, (3, 4, 5)),
    "flatten_from_2": (lambda: nn.Flatten(2), (3, 4, 5)),
    "flatten_1_to_2": (lambda: nn.Flatten(1, 2), (3, 4, 5)),
    "flatten_all": (lambda: nn.Flatten(0), (3, 4)),
    "dropout": (lambda: nn.Dropout(0.5), (3, 4)),  # exported in training mode: still the identity
    "layernorm": (lambda: nn.LayerNorm(6), (4, 6)),
    "layernorm_2d": (lambda: nn.LayerNorm((4, 6), eps=1e-3), (4, 6)),
    "layernorm_no_affine": (lambda: nn.LayerNorm(6, elementwise_affine=False), (6,)),
    "groupnorm": (lambda: nn.GroupNorm(2, 6), (6, 4, 5)),
    "groupnorm_no_affine": (lambda: nn.GroupNorm(3, 6, affine=False), (6, 4, 5)),
    "groupnorm_3d": (lambda: nn.GroupNorm(2, 6, eps=1e-3), (6, 7)),
    "instancenorm": (lambda: nn.InstanceNorm2d(4), (4, 5, 6)),
    "instancenorm_affine": (lambda: nn.InstanceNorm2d(4, affine=True), (4, 5, 6)),
    "residual": (lambda: nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())), (3, 6, 6)),
    "sequential": (lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Dropout(0.2), nn.Linear(4, 3)), (6,)),
    "empty_sequential": (nn.Sequential, (4,)),
    "adaptive_to_1x1": (lambda: nn.AdaptiveAvgPool2d(1), (3, 5, 7)),
    "adaptive_tiles": (lambda: nn.AdaptiveAvgPool2d((4, 3)), (3, 8, 6)),
    "adaptive_identity": (lambda: nn.AdaptiveAvgPool2d(7), (3, 7, 7)),  # torchvision's VGG at 224x224
    "adaptive_overlapping": (lambda: nn.AdaptiveAvgPool2d((4, 5)), (3, 9, 11)),
    "adaptive_enlarging": (lambda: nn.AdaptiveAvgPool2d(7), (3, 1, 1)),  # VGG at 32x32: 1x1 -> 7x7
    "adaptive_none": (lambda: nn.AdaptiveAvgPool2d((None, 4)), (3, 5, 9)),
}


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(tmp_path, rng, name, opset):
    make, shape = LAYERS[name]
    gk.manual_seed(1)
    check_export(randomize_norms(make(), rng), [shape], tmp_path, rng, opset=opset)


@pytest.mark.parametrize("opset,nodes", [(17, ["Div", "Erf", "Mul", "Add", "Mul"]), (20, ["Gelu"])])
def test_gelu_form(tmp_path, rng, opset, nodes):
    proto = check_export(nn.GELU(), [(3, 4)], tmp_path, rng, opset=opset, batches=(5,))
    assert op_types(proto) == nodes


@pytest.mark.parametrize("opset,node", [(17, "InstanceNormalization"), (21, "GroupNormalization")])
def test_group_norm_form(tmp_path, rng, opset, node):
    proto = check_export(randomize_norms(nn.GroupNorm(2, 6), rng), [(6, 3, 3)], tmp_path, rng, opset=opset,
                         batches=(5,))
    assert node in op_types(proto)


def test_linear_forms(tmp_path, rng):
    """Gemm with the weight as stored for (N, F); MatMul + Add for (N, L, F)."""
    assert op_types(check_export(nn.Linear(4, 3), [(4,)], tmp_path, rng, batches=(2,))) == ["Gemm"]
    proto = check_export(nn.Linear(4, 3), [(5, 4)], tmp_path, rng, batches=(2,))
    assert op_types(proto) == ["Transpose", "MatMul", "Add"]


def test_layer_subclass_keeping_forward(tmp_path, rng):
    class MyReLU(nn.ReLU):
        """A subclass with the ReLU's own forward: exported as a Relu."""

    assert op_types(check_export(MyReLU(), [(3,)], tmp_path, rng, batches=(2,))) == ["Relu"]


# ---- bad layers and arguments: ValueError before anything is written ------------------------

class Square(nn.Module):
    """A leaf with a forward and backward of its own: the exporter cannot know its computation."""

    def forward(self, x):
        self._save_for_backward(x=x)
        return x * x

    def backward(self, dy):
        return 2 * self._saved()["x"] * dy


class DoubledReLU(nn.ReLU):
    """A ReLU subclass with a forward and backward of its own: not a ReLU for the exporter."""

    def forward(self, x):
        return 2 * super().forward(x)

    def backward(self, dy):
        return 2 * super().backward(dy)


def failing_model():
    """The unsupported layers come after a batch norm, in training mode."""
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.ReLU(), Square()),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3), DoubledReLU())


def test_unsupported_layers_raise_before_writing(tmp_path, rng):
    model = randomize_norms(failing_model(), rng)
    model[0].eval()  # mixed modes are put back as they were
    before = snapshot(model)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    path = tmp_path / "model.onnx"
    with pytest.raises(ValueError) as info:
        gk.onnx.export(model, x, path)
    message = str(info.value)
    assert "2.1 (Square)" in message and "5 (DoubledReLU)" in message and "overrides ReLU.forward" in message
    assert "nothing was written" in message
    assert os.listdir(tmp_path) == []
    assert snapshot(model) == before
    path.write_bytes(b"an older model")  # a failed export leaves an existing file alone
    with pytest.raises(ValueError, match="Square"):
        gk.onnx.export(model, x, path)
    assert path.read_bytes() == b"an older model" and os.listdir(tmp_path) == ["model.onnx"]
    assert snapshot(model) == before


def test_batch_norm_without_running_stats_raises(tmp_path, rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False))
    with pytest.raises(ValueError, match=r"1 \(BatchNorm1d\): track_running_stats=False"):
        gk.onnx.export(model, rng.standard_normal((2, 3)).astype(np.float32), tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_layer_norm_needs_opset_17(tmp_path, rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match=r"1 \(LayerNorm\): ONNX's LayerNormalization needs opset >= 17, got opset=13"):
        gk.onnx.export(model, rng.standard_normal((2, 3)).astype(np.float32), tmp_path / "m.onnx", opset=13)
    assert os.listdir(tmp_path) == []


def test_instance_norm_unbatched_raises(tmp_path, rng):
    with pytest.raises(ValueError, match=r"the model \(InstanceNorm2d\): expected a batched"):
        gk.onnx.export(nn.InstanceNorm2d(3), rng.standard_normal((3, 4, 4)).astype(np.float32), tmp_path / "m.onnx")


def test_bad_arguments(tmp_path, rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    model = nn.Linear(3, 2)
    newest = onnx.defs.onnx_opset_version()
    for opset in (12, newest + 1):
        with pytest.raises(ValueError, match=rf"opset: expected an integer in \[13, {newest}\], got {opset}"):
            gk.onnx.export(model, x, tmp_path / "m.onnx", opset=opset)
    for opset in (17.0, True, "17"):
        with pytest.raises(TypeError, match=r"opset: expected an int, got"):
            gk.onnx.export(model, x, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(TypeError, match="model: expected a gk.nn.Module, got function"):
        gk.onnx.export(lambda v: v, x, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="example_input: expected a numpy.ndarray, got list"):
        gk.onnx.export(model, [[1.0, 2.0, 3.0]], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="dynamic_batch: expected a bool, got int"):
        gk.onnx.export(model, x, tmp_path / "m.onnx", dynamic_batch=1)
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike, got int"):
        gk.onnx.export(model, x, 3)
    with pytest.raises(FileNotFoundError, match="gk.onnx.export: path: directory"):
        gk.onnx.export(model, x, tmp_path / "missing" / "m.onnx")
    assert os.listdir(tmp_path) == []


# ---- the file, the batch axis, dtypes, the model's state ----------------------------------------

def test_atomic_replace_and_str_path(tmp_path, rng):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = nn.Linear(3, 2)
    assert gk.onnx.export(model, rng.standard_normal((2, 3)).astype(np.float32), str(path)) == str(path)
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary file left
    onnx.checker.check_model(onnx.load(os.fspath(path)), full_check=True)


def test_fixed_batch(tmp_path, rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    path = gk.onnx.export(model, rng.standard_normal((5, 3)).astype(np.float32), tmp_path / "m.onnx",
                          dynamic_batch=False)
    proto = onnx.load(os.fspath(path))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [5, 3]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [5, 4]
    sess = session(path)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    assert_close(sess.run(None, {"input": x})[0], eval_forward(model, x)[0], "batch 5")
    with pytest.raises(Exception, match="Got invalid dimensions"):
        sess.run(None, {"input": x[:2]})


def test_forward_cache_kept(tmp_path, rng):
    """A forward, an export, then the backward of that forward."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = model(x)
    gk.onnx.export(model, x[:2], tmp_path / "m.onnx")
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.abs(model[0].weight.grad).sum() > 0


def test_float64_mlp_runs_in_double(tmp_path, rng):
    model = randomize_norms(nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.LayerNorm(8),
                                          nn.LeakyReLU(0.1), nn.Linear(8, 3), nn.Sigmoid()).double(), rng)
    proto = check_export(model, [(5,)], tmp_path, rng, dtype=np.float64, tol=1e-9)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.DOUBLE}


def test_float64_cnn_is_double(tmp_path, rng):
    """onnxruntime has no double Conv, pooling or Elu kernels: onnx's reference evaluator runs it
    (its Erf computes in float32, so no GELU here)."""
    from onnx.reference import ReferenceEvaluator

    model = randomize_norms(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ELU(),
                                          nn.AvgPool2d(2), nn.GroupNorm(2, 4), nn.GlobalAvgPool2d(),
                                          nn.Linear(4, 3)).double(), rng)
    x = rng.standard_normal((3, 2, 6, 6))
    path = gk.onnx.export(model, x, tmp_path / "m.onnx")
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    got = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    assert_close(got, eval_forward(model, x)[0], "float64", tol=1e-9)


def test_import_gradkit_does_not_import_onnx():
    code = "import sys, gradkit; assert 'onnx' not in sys.modules, 'onnx imported'; print(gradkit.onnx.export)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr


def test_missing_onnx_says_how_to_install(tmp_path, rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ImportError, match=r'pip install "gradkit\[onnx\]"'):
        gk.onnx.export(nn.Linear(3, 2), rng.standard_normal((2, 3)).astype(np.float32), tmp_path / "m.onnx")


# ---- gk.nn.functional ops and derived-backward modules -------------------------------------------

class FunctionalNet(nn.Module):
    """Every gk.nn.functional op in one forward, with Parameters and a buffer as operands."""

    def __init__(self, rng):
        super().__init__()
        self.w = nn.Parameter((0.3 * rng.standard_normal((4, 3, 3, 3))).astype(np.float32))
        self.b = nn.Parameter((0.1 * rng.standard_normal(4)).astype(np.float32))
        self.dw = nn.Parameter((0.3 * rng.standard_normal((4, 2, 3, 3))).astype(np.float32))
        self.scale = nn.Parameter((1 + 0.2 * rng.standard_normal((4, 1, 1))).astype(np.float32))
        self.register_buffer("gain", (1 + 0.2 * rng.standard_normal((4, 1, 1))).astype(np.float32))
        self.fc_w = nn.Parameter((0.1 * rng.standard_normal((5, 12 * 4 * 4))).astype(np.float32))
        self.fc_b = nn.Parameter((0.1 * rng.standard_normal(5)).astype(np.float32))

    def forward(self, x):
        h = F.conv2d(x, self.w, self.b, padding=1)                             # (N, 4, 8, 8)
        h2 = F.conv2d(h, self.dw, None, stride=1, padding=2, dilation=2, groups=2)
        s = F.add(F.relu(h), F.leaky_relu(h2, negative_slope=0.2), F.elu(h, alpha=0.5))
        t = F.mul(F.sub(F.gelu(h), F.sigmoid(h2)), self.scale)
        u = F.mul(F.tanh(F.mul(h, self.gain)), F.tanh(h2))
        c = F.cat([s, t, u], dim=1)                                             # (N, 12, 8, 8)
        p = F.max_pool2d(c, 2)                                                  # (N, 12, 4, 4)
        q = F.avg_pool2d(c, 3, stride=2, padding=1)                             # (N, 12, 4, 4)
        z = F.flatten(F.dropout(F.add(p, q), p=0.5, training=self.training))
        return F.cat([F.linear(z, self.fc_w, self.fc_b), F.global_avg_pool2d(q)], dim=1)


def test_functional_ops(tmp_path, rng):
    model = FunctionalNet(rng)
    proto = check_export(model, [(3, 8, 8)], tmp_path, rng)
    names = {t.name for t in proto.graph.initializer}
    assert {"w", "b", "dw", "scale", "gain", "fc_w", "fc_b"} <= names


class TwoHeads(nn.Module):
    """A derived-backward module: a concatenation of two branches and two outputs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 4, 3, padding=1)
        self.pool = nn.GlobalAvgPool2d()
        self.cls = nn.Linear(8, 5)
        self.reg = nn.Linear(8, 2)

    def forward(self, x):
        h = self.stem(x)
        f = self.pool(F.relu(F.cat([self.left(h), self.right(h)], dim=1)))
        return self.cls(f), F.sigmoid(self.reg(f))


def test_derived_backward_two_outputs(tmp_path, rng):
    model = randomize_norms(TwoHeads(), rng)
    proto = check_export(model, [(3, 9, 9)], tmp_path, rng)
    assert [o.name for o in proto.graph.output] == ["output0", "output1"]
    assert "Concat" in op_types(proto)
    for o in proto.graph.output:
        assert o.type.tensor_type.shape.dim[0].dim_param == "batch"


class TwoInputs(nn.Module):
    """Two inputs, a shared layer called twice, an input returned as an output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, a, b):
        return F.add(self.fc(self.fc(a)), b), F.mul(a, b), a


def test_two_inputs_shared_layer(tmp_path, rng):
    model = TwoInputs()
    proto = check_export(model, [(4,), (4,)], tmp_path, rng)
    assert [i.name for i in proto.graph.input] == ["input0", "input1"]
    assert [o.name for o in proto.graph.output] == ["output0", "output1", "output2"]
    assert sorted(t.name for t in proto.graph.initializer) == ["fc.bias", "fc.weight"]  # stored once
    x = rng.standard_normal((3, 4)).astype(np.float32)  # one array as both inputs: still two graph inputs
    gk.onnx.export(model, (x, x), tmp_path / "same.onnx")
    got = session(tmp_path / "same.onnx").run(None, {"input0": x, "input1": 2 * x})
    for i, (g, w) in enumerate(zip(got, eval_forward(model, x, 2 * x))):
        assert_close(g, w, f"output {i}")


def test_derived_blocks_in_a_sequential(tmp_path, rng):
    """gk.models' BasicBlock (forward only) between plain layers of a Sequential."""
    from gradkit.models.resnet import BasicBlock

    model = randomize_norms(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          BasicBlock(8, 8), BasicBlock(8, 16, stride=2), nn.GlobalAvgPool2d(),
                                          nn.Linear(16, 10)), rng)
    check_export(model, [(3, 12, 12)], tmp_path, rng)


# ---- the gk.models models ---------------------------------------------------------------------------

MODELS = {  # name: (builder, input shape, ONNX ops it must contain)
    "resnet18": (lambda: gk.models.resnet18(num_classes=10), (3, 64, 64), {"Add": 8, "GlobalAveragePool": 1}),
    "resnet20": (lambda: gk.models.resnet20(), (3, 32, 32), {"Add": 9, "GlobalAveragePool": 1}),
    "resnet34": (lambda: gk.models.resnet34(num_classes=10), (3, 64, 64), {"Add": 16, "GlobalAveragePool": 1}),
    "resnet56": (lambda: gk.models.resnet56(), (3, 32, 32), {"Add": 27, "GlobalAveragePool": 1}),
    # at 32x32 the features end at 1x1: the 7x7 adaptive pool copies them (two MatMuls with PyTorch's bins)
    "vgg11_bn": (lambda: gk.models.vgg11_bn(num_classes=10), (3, 32, 32), {"MatMul": 2, "Gemm": 3}),
    "vgg16_bn": (lambda: gk.models.vgg16_bn(num_classes=10), (3, 32, 32), {"MatMul": 2, "Gemm": 3}),
    "mlp": (lambda: gk.models.mlp(784, [64, 32], 10, dropout=0.2), (1, 28, 28), {"Gemm": 3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models(tmp_path, rng, name):
    make, shape, ops = MODELS[name]
    gk.manual_seed(2)
    model = randomize_norms(make(), rng)
    types = op_types(check_export(model, [shape], tmp_path, rng))
    assert {op: types.count(op) for op in ops} == ops
