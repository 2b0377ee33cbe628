"""One DiffusionPipeline per method. `PIPELINES` lists every class that `import genlab` registers in diffusers."""

from .base import GenlabImageOutput, GenlabPipeline
from .ddt import DDTPipeline
from .dit_flow import FlowDiTPipeline

PIPELINES = [FlowDiTPipeline, DDTPipeline]

__all__ = ["GenlabImageOutput", "GenlabPipeline", "FlowDiTPipeline", "DDTPipeline", "PIPELINES"]
