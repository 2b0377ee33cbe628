"""One DiffusionPipeline per method. `PIPELINES` lists every class that `import genlab` registers in diffusers."""

from .ar import ARPipeline
from .base import GenlabImageOutput, GenlabPipeline, GenlabVideoOutput
from .ddt import DDTPipeline
from .dit_flow import FlowDiTPipeline
from .nar import NARPipeline
from .nar_video import NARVideoPipeline

PIPELINES = [FlowDiTPipeline, DDTPipeline, ARPipeline, NARPipeline, NARVideoPipeline]

__all__ = ["GenlabImageOutput", "GenlabPipeline", "FlowDiTPipeline", "DDTPipeline", "ARPipeline", "NARPipeline",
           "NARVideoPipeline", "GenlabVideoOutput",
           "PIPELINES"]
