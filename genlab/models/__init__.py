"""One file per method and per baseline. Each model is a GenlabModel; forward() is the training forward."""

from .ddt import DDT_PRESETS, DDTModel
from .dit import DIT_PRESETS, DiTModel

__all__ = ["DDT_PRESETS", "DDTModel", "DIT_PRESETS", "DiTModel"]
