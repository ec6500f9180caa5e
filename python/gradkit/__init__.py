"""gradkit: train neural networks fast on CPUs.

SIMD and OpenMP C++ kernels under a small NumPy API modelled on PyTorch
(layers, optimizers) and Keras (Trainer, callbacks). See shared/API.md.
"""
from . import _core
from ._config import get_num_threads, is_grad_enabled, manual_seed, no_grad, set_num_threads, show_config
from . import ops
from . import nn
from . import optim
from .gradcheck import gradcheck
from .serialization import load, save
from . import callbacks, data, datasets, diagnostics, distributed, models, onnx
from .train import Trainer

__version__ = _core.__version__

__all__ = [
    "__version__", "get_num_threads", "set_num_threads", "manual_seed", "show_config", "no_grad",
    "is_grad_enabled", "gradcheck", "save", "load", "Trainer",
    "ops", "nn", "optim", "callbacks", "data", "datasets", "diagnostics", "distributed", "models", "onnx",
]
