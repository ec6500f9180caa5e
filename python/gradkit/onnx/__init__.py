"""``gk.onnx``: export a trained model to ONNX (extra ``gradkit[onnx]``).

``gk.onnx.export(model, example_input, path)`` writes an ONNX model that onnxruntime,
OpenVINO, TensorRT and the other ONNX runtimes run. The ``onnx`` package is imported
by ``export`` only, so ``import gradkit`` never needs it.
"""
from ._export import export

__all__ = ["export"]
