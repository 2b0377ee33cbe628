"""One file per method and per baseline. Each model is a GenlabModel; forward() is the training forward.

The method models (registered in genlab/methods/) are imported on first access, e.g. `from genlab.models import
DDTModel`; the shared token sampler is imported with the package."""

from ..registry import lazy_namespace
from .sampling import filter_logits, generate_tokens, sample_from_logits

__getattr__, __dir__ = lazy_namespace(__name__)

__all__ = ["filter_logits", "generate_tokens", "sample_from_logits"]
