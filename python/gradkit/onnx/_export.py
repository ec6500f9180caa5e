"""``gk.onnx.export``: trace one eval-mode forward, map each recorded call to ONNX, check, write."""
from __future__ import annotations

import contextlib
import inspect
import os

import numpy as np

from .. import _core
from .._checks import boolean, integer
from ..nn import _record
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..serialization import _atomic_write
from . import _ops

__all__ = ["export"]

#: The oldest opset written: ONNX 1.8's (Reshape, Concat, Gemm, pooling, Erf in their current forms).
MIN_OPSET = 13


def _import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError('gk.onnx.export needs the onnx package: pip install "gradkit[onnx]"') from e
    return onnx


@contextlib.contextmanager
def _model_preserved(model: Module):
    """Put back every submodule's train/eval flag and forward cache, however the block ends
    (an eval forward under no_grad changes no weight or buffer, but it would drop the caches)."""
    flags, caches = [(m, m.training) for m in model.modules()], model.saved_caches()
    try:
        yield
    finally:
        for m, training in flags:
            object.__setattr__(m, "training", training)
        model.restore_caches(caches)


class _Graph:
    """The ONNX graph built from a trace: its nodes, its initializers and the ONNX name of
    every traced value. Layer and op builders (``_ops``) add to it through ``emit``, ``tensor``,
    ``array``, ``scalar`` and ``ints``."""

    def __init__(self, onnx, trace, model: Module, opset: int, dynamic_batch: bool):
        self.helper, self.numpy_helper, self.shape_inference = onnx.helper, onnx.numpy_helper, onnx.shape_inference
        self.trace, self.values, self.opset, self.root = trace, trace.values, opset, model
        self.dynamic_batch = dynamic_batch
        self.nodes, self.initializers = [], []
        self._constants = {}  # id of an array (kept alive here) or a key of a small constant -> name
        self._array_names = {id(p.data): name for name, p in model.named_parameters()}
        self._array_names.update({id(b): name for name, b in model.named_buffers()})
        self.input_names = self._io_names("input", len(trace.inputs))
        self.output_names = self._io_names("output", len(trace.outputs))
        self._used = set(self.input_names) | set(self.output_names)
        self.names = dict(zip(trace.inputs, self.input_names))  # value id -> ONNX name
        produced = {v for node in trace.nodes for v in node.outputs}
        self._final = {}  # value id -> the output name its producing node writes directly
        for vid, name in zip(trace.outputs, self.output_names):
            if vid in produced:
                self._final.setdefault(vid, name)
        self.node = None  # the recorded call being converted
        self._base = ""

    @staticmethod
    def _io_names(prefix: str, n: int) -> list:
        return [prefix] if n == 1 else [f"{prefix}{i}" for i in range(n)]

    def _unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    # -- what builders call -------------------------------------------------------------------
    def emit(self, op: str, inputs, **attrs) -> str:
        """Append one ONNX node; returns the name of its (single) output."""
        out = self._unique(f"{self._base}/{op}" if self._base else op)
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def tensor(self, arg) -> str:
        """The ONNX name of an array argument: a traced value, a Parameter or a buffer."""
        if isinstance(arg, _record.Value):
            return self.names[arg.id]
        return self.array(_array_of(arg))

    def array(self, a: np.ndarray) -> str:
        """An initializer holding ``a`` (one per array: a shared Parameter is stored once), named
        as in the model's state_dict when it is a parameter or buffer."""
        hit = self._constants.get(id(a))
        if hit is not None:
            return hit[1]
        name = self._unique(self._array_names.get(id(a)) or f"{self._base}/const")
        self._constants[id(a)] = (a, name)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def _small(self, key, value: np.ndarray, base: str) -> str:
        if key not in self._constants:
            name = self._unique(base)
            self._constants[key] = (value, name)
            self.initializers.append(self.numpy_helper.from_array(value, name))
        return self._constants[key][1]

    def scalar(self, value, dtype) -> str:
        dtype = np.dtype(dtype)
        return self._small(("scalar", dtype.str, float(value)), np.array(value, dtype=dtype), f"{dtype.name}_{value}")

    def ints(self, values) -> str:
        values = tuple(int(v) for v in values)
        return self._small(("ints", values), np.array(values, dtype=np.int64), "shape")

    def shape(self, arg) -> tuple:
        if isinstance(arg, _record.Value):
            return tuple(self.values[arg.id][0])
        return _array_of(arg).shape

    def dtype(self, arg) -> np.dtype:
        if isinstance(arg, _record.Value):
            return np.dtype(self.values[arg.id][1])
        return _array_of(arg).dtype

    def out_shape(self, i: int = 0) -> tuple:
        return tuple(self.values[self.node.outputs[i]][0])

    def elem_type(self, dtype) -> int:
        return self.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def need_opset(self, opset: int, op: str) -> None:
        if self.opset < opset:
            raise ValueError(f"ONNX's {op} needs opset >= {opset}, got opset={self.opset}")

    # -- the conversion -----------------------------------------------------------------------
    def convert(self):
        """Map every recorded call; ValueError listing each layer or op with no ONNX form."""
        problems = []
        for node in self.trace.nodes:
            self.node, self._base = node, node.name or node.op
            start = len(self.nodes)
            try:
                if node.op == "module":
                    results = _ops.module_builder(node.module)(self, node.module, *node.args, **node.kwargs)
                else:
                    build = _ops.FUNCTIONS.get(node.op)
                    if build is None:
                        raise ValueError("the exporter knows no ONNX form for this op")
                    try:  # the builder takes the op's own arguments
                        bound = inspect.signature(build).bind(self, *node.args, **node.kwargs)
                    except TypeError as e:
                        raise ValueError(f"arguments not understood by the exporter ({e})") from None
                    results = build(*bound.args, **bound.kwargs)
            except ValueError as e:
                problems.append(f"{self._label(node)}: {e}")
                results = [f"<{node.name}>"] * len(node.outputs)  # placeholders: keep converting
            results = [results] if isinstance(results, str) else list(results)
            for vid, name in zip(node.outputs, results):
                self._bind(vid, name, start)
        if problems:
            raise ValueError("gk.onnx.export: no ONNX form for " + "; ".join(problems) + " (nothing was written)")

    def _label(self, node) -> str:
        """'layer1.0.conv1 (Conv2d)' for a layer, 'layer1.0.add (F.add)' for an op."""
        if node.op != "module":
            return f"{node.name} (F.{node.op})"
        return f"{'the model' if node.module is self.root else node.name} ({type(node.module).__name__})"

    def _bind(self, vid, name: str, start: int) -> None:
        """Give value ``vid`` the ONNX name ``name``; a graph output produced by a node of this
        call takes its final name ('output') there instead of an Identity later."""
        final = self._final.get(vid)
        node = next((n for n in self.nodes[start:] if name in n.output), None)
        if final is not None and node is not None:
            node.output[list(node.output).index(name)] = final
            node.name = final
            name = final
        self.names[vid] = name

    def _traced_info(self, name: str, vid, batch: int):
        """The traced shape, its first dimension ``batch`` when it is the inputs' batch size."""
        shape, dtype = self.values[vid]
        dims = list(shape)
        if self.dynamic_batch and dims and dims[0] == batch:
            dims[0] = "batch"
        return self.helper.make_tensor_value_info(name, self.elem_type(dtype), dims)

    def _set_output_shapes(self, proto, batch: int) -> None:
        """The outputs' shapes as ONNX's shape inference gives them from the inputs' (a dimension
        that follows the batch stays symbolic), checked against the traced shapes; the traced
        shapes where inference stops (e.g. after GroupNormalization-21, a function)."""
        inferred = self.shape_inference.infer_shapes(proto, strict_mode=True).graph.output
        for declared, out, vid in zip(proto.graph.output, inferred, self.trace.outputs):
            traced = tuple(self.values[vid][0])
            if not out.type.tensor_type.HasField("shape"):
                declared.CopyFrom(self._traced_info(declared.name, vid, batch))
                continue
            dims = out.type.tensor_type.shape.dim
            sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            if len(sizes) != len(traced) or any(n is not None and n != t for n, t in zip(sizes, traced)):
                raise RuntimeError(f"gk.onnx.export: ONNX infers the shape {sizes} for {out.name}, the forward gave "
                                   f"{traced} (an exporter bug: please report it)")
            for d in dims:
                if d.dim_param.startswith("unk__"):  # a size ONNX cannot name (e.g. a flattened batch): unknown
                    d.ClearField("dim_param")
            declared.CopyFrom(out)

    def build(self, producer_version: str):
        """The ModelProto (``convert`` raises ValueError when a call has no ONNX form)."""
        self.convert()
        for vid, name in zip(self.trace.outputs, self.output_names):
            if self.names[vid] != name:  # an input returned as is, or a value returned twice
                self.nodes.append(self.helper.make_node("Identity", [self.names[vid]], [name], name=name))
        batch = self.values[self.trace.inputs[0]][0][0] if self.trace.inputs else None
        graph = self.helper.make_graph(
            self.nodes, "gradkit",
            [self._traced_info(n, v, batch) for n, v in zip(self.input_names, self.trace.inputs)],
            [self.helper.make_tensor_value_info(n, self.elem_type(self.values[v][1]), None)
             for n, v in zip(self.output_names, self.trace.outputs)],
            self.initializers)
        opsets = [self.helper.make_opsetid("", self.opset)]
        proto = self.helper.make_model(graph, opset_imports=opsets, producer_name="gradkit",
                                       producer_version=producer_version)
        proto.ir_version = self.helper.find_min_ir_version_for(opsets)  # the oldest readers can load it
        self._set_output_shapes(proto, batch)
        return proto


def _array_of(arg) -> np.ndarray:
    """The array behind a recorded Parameter or buffer argument (or a Parameter passed as is)."""
    if isinstance(arg, (_record.Param, _record.Const)):
        arg = arg.data
    if isinstance(arg, Parameter):
        arg = arg.data
    if not isinstance(arg, np.ndarray):
        raise ValueError(f"expected an array argument, got {type(arg).__name__}")
    return arg


def export(model, example_input, path, opset: int = 17, dynamic_batch: bool = True):
    """Write ``model`` as an ONNX model for inference (onnxruntime, OpenVINO, TensorRT, ...).

    Runs one eval-mode forward of ``model`` on ``example_input`` under ``gk.no_grad()``,
    recording each layer call and ``gk.nn.functional`` op (the mechanism of the derived
    backward), and maps them to ONNX operators: Conv, Gemm (MatMul + Add for inputs of other
    ranks), BatchNormalization with the running statistics, the activations, pooling, Flatten,
    Add/Sub/Mul, Concat, LayerNormalization, GroupNormalization (InstanceNormalization below
    opset 21), InstanceNormalization; dropout is the identity. Initializers are named as the
    ``state_dict`` keys. The model's train/eval flags, weights and buffers are left as they were.

    Args:
        model: a ``gk.nn.Module`` (a Sequential, a derived-backward module, a ``gk.models`` model).
        example_input: an array, or a tuple of arrays for a model with several inputs; it fixes
            every dimension but the batch.
        path: the file to write (str or os.PathLike); written atomically (temp file + rename).
        opset: the ONNX opset (default 17; 13 up to the installed onnx's newest).
        dynamic_batch: make the first dimension of the inputs (and of the outputs that have the
            batch size) a symbolic ``batch`` (default True), else keep the example's sizes.

    Returns:
        ``path``. Inputs are named ``input`` (or ``input0``, ``input1``, ...), outputs ``output``
        (or ``output0``, ...). float64 models are written in double; onnxruntime's CPU provider
        lacks double kernels for several operators (Conv, pooling, Erf, Elu).

    Raises:
        ValueError: naming each layer (dotted path and type) or op with no ONNX form, before any
            file is written. ImportError: the ``onnx`` package is missing (``pip install "gradkit[onnx]"``).
    """
    if not isinstance(model, Module):
        raise TypeError(f"gk.onnx.export: model: expected a gk.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    for i, x in enumerate(inputs):
        if not isinstance(x, np.ndarray):
            which = "example_input" if len(inputs) == 1 else f"example_input[{i}]"
            raise TypeError(f"gk.onnx.export: {which}: expected a numpy.ndarray, got {type(x).__name__}")
    dynamic_batch = boolean("gk.onnx.export", "dynamic_batch", dynamic_batch)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"gk.onnx.export: path: expected a str or os.PathLike, got {type(path).__name__}")
    # one array passed twice is two inputs of the graph: the trace tells arrays apart by identity
    inputs = tuple(x.copy() if any(x is y for y in inputs[:i]) else x for i, x in enumerate(inputs))
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    opset = integer("gk.onnx.export", "opset", opset, MIN_OPSET, newest)  # newest: the installed onnx's
    with _model_preserved(model):
        model.eval()
        trace = _record.trace(model, *inputs)
    proto = _Graph(onnx, trace, model, int(opset), dynamic_batch).build(_core.__version__)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    _atomic_write(path, lambda f: f.write(data), "gk.onnx.export")
    return path
