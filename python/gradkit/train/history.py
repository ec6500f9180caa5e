"""The former home of ``History`` (now ``gradkit.callbacks.history``): kept so that pickles
naming ``gradkit.train.history.History`` still load."""
from ..callbacks.history import History

__all__ = ["History"]
