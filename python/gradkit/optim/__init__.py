"""Optimizers, learning-rate schedulers and gradient clipping (PyTorch's names, defaults and rules).

Every optimizer updates all its parameters in one fused C++ call per step
(float32 and float64, one pass over memory per element).
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "clip_grad_norm_", "lr_scheduler"]
