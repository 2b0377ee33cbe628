"""One DiffusionPipeline per method (registered in genlab/methods/, imported on first access, e.g.
`from genlab.pipelines import DDTPipeline`); `GenlabPipeline` is the base they share."""

from ..registry import lazy_namespace

__getattr__, __dir__ = lazy_namespace(__name__)
from .base import MAX_INFERENCE_STEPS, GenlabPipeline, GenlabVideoOutput  # noqa: E402

__all__ = ["MAX_INFERENCE_STEPS", "GenlabPipeline", "GenlabVideoOutput"]
