"""One file per method and per baseline. Each model is a GenlabModel; forward() is the training forward."""

from .dit import DIT_PRESETS, DiTModel

__all__ = ["DIT_PRESETS", "DiTModel"]
