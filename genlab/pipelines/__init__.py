"""One DiffusionPipeline per method. `PIPELINES` lists every class that `import genlab` registers in diffusers."""

from .ar import ARPipeline
from .base import GenlabImageOutput, GenlabPipeline
from .ddt import DDTPipeline
from .dit_flow import FlowDiTPipeline
from .nar import NARPipeline

PIPELINES = [FlowDiTPipeline, DDTPipeline, ARPipeline, NARPipeline]

__all__ = ["GenlabImageOutput", "GenlabPipeline", "FlowDiTPipeline", "DDTPipeline", "ARPipeline", "NARPipeline",
           "PIPELINES"]
