"""Training loop: ``Trainer`` (fit / evaluate / predict), its ``TrainerState`` and ``History``."""
from ..callbacks.history import History
from .state import TrainerState
from .trainer import Trainer

__all__ = ["Trainer", "TrainerState", "History"]
