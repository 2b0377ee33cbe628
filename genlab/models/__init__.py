"""One file per method and per baseline. Each model is a GenlabModel; forward() is the training forward."""

from .ar import ARModel
from .common import TOKEN_TRANSFORMER_PRESETS
from .ddt import DDT_PRESETS, DDTModel
from .dit import DIT_PRESETS, DiTModel
from .nar import NARModel
from .sampling import filter_logits, generate_tokens, sample_from_logits

__all__ = ["ARModel", "NARModel", "TOKEN_TRANSFORMER_PRESETS", "DDT_PRESETS", "DDTModel", "DIT_PRESETS", "DiTModel",
           "filter_logits", "generate_tokens", "sample_from_logits"]
