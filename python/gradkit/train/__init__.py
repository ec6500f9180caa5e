"""Training loop: ``Trainer`` (fit / evaluate / predict) and its ``History``."""
from .history import History
from .trainer import Trainer

__all__ = ["Trainer", "History"]
