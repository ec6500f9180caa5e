"""The former home of ``ActivationStats`` and ``UpdateRatio`` (now ``gradkit.callbacks.diagnostics``,
public as ``gk.callbacks.ActivationStats`` and ``gk.callbacks.UpdateRatio``): kept so that pickles
naming ``gradkit.diagnostics.callbacks`` still load. Nothing in gradkit imports it."""
from ..callbacks.diagnostics import ActivationStats, UpdateRatio

__all__ = ["ActivationStats", "UpdateRatio"]
