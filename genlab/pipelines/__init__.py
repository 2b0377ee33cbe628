"""One DiffusionPipeline per method. `PIPELINES` lists every class that `import genlab` registers in diffusers."""

from .base import GenlabImageOutput, GenlabPipeline
from .dit_flow import FlowDiTPipeline

PIPELINES = [FlowDiTPipeline]

__all__ = ["GenlabImageOutput", "GenlabPipeline", "FlowDiTPipeline", "PIPELINES"]
