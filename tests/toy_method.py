"""A toy method that lives entirely outside the genlab package, registered through `genlab.registry`: a tiny
text-to-image regressor (MiniLM sentence embedding -> Linear -> image), its pipeline (prompt-conditioned), recipe
kind, objective, recipe folder and bench. The tests load it with GENLAB_PLUGINS=toy_method (tests/ on the path) to
show that a new method needs nothing but its own module."""

from __future__ import annotations

import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin, SchedulerMixin  # noqa: F401  diffusers looks these up on a component's module
from diffusers.configuration_utils import register_to_config

from genlab.eval.harness import Bench, BenchArgument
from genlab.modeling import GenlabModel
from genlab.pipelines.base import GenlabPipeline
from genlab.registry import register_method
from genlab.training.builders import PipelineBuilder


class ToyTextModel(GenlabModel):
    """A sentence embedding (B, text_dim) -> an image (B, C, S, S) in [-1, 1]."""

    @register_to_config
    def __init__(self, text_dim: int = 384, in_channels: int = 3, sample_size: int = 8):
        super().__init__()
        self.proj = nn.Linear(text_dim, in_channels * sample_size * sample_size)

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        c, s = self.config.in_channels, self.config.sample_size
        return torch.tanh(self.proj(text_embeddings)).view(-1, c, s, s)


class ToyPipeline(GenlabPipeline):
    conditioning_component = "model"

    def __init__(self, model, text_encoder):
        super().__init__()
        self.register_modules(model=model, text_encoder=text_encoder)

    @torch.no_grad()
    def __call__(self, prompt=None, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        self.check_output_type(output_type)
        prompts = self.resolve_prompts(prompt)
        images = self.model(self.text_encoder.encode(prompts).pooled)
        noise = torch.randn(images.shape, generator=generator)  # the generator matters, as in a real sampler
        return self.image_output(images + 0.01 * noise, output_type, return_dict)


class ToyRegression(nn.Module):
    """MSE between the model's image for a caption and the captioned image."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, model, batch, generator=None):
        pooled = self.text_encoder.encode(list(batch["caption"])).pooled.to(batch["pixel_values"].device)
        return {"loss": F.mse_loss(model(pooled), batch["pixel_values"])}


class ToyBuilder(PipelineBuilder):
    model_class = "ToyTextModel"
    pipeline_class = "ToyPipeline"
    objective_type = "toy_regression"

    def data_config(self) -> dict:
        from genlab.text_encoder import MiniLMTextEncoder

        self.text_encoder = MiniLMTextEncoder()
        return dict(in_channels=self.dataset.channels, sample_size=self.dataset.image_size,
                    text_dim=self.text_encoder.hidden_size)

    def condition_config(self) -> dict:
        return {}  # conditioned on text, not classes

    def make_objective(self, objective_cls, spec):
        return objective_cls(self.text_encoder, **spec)

    def pipeline_components(self, model) -> dict:
        return dict(model=model, text_encoder=self.text_encoder)

    def preview_inputs(self, pipe) -> dict:
        return {"prompt": list(self.dataset.captions[:4])}


def bench_toy(pipeline: str = "", repeats: int = 2, out: str | None = None) -> dict:
    from genlab.pipelines.loading import load_pipeline

    pipe = load_pipeline(pipeline)
    start = time.perf_counter()
    for _ in range(repeats):
        pipe(prompt="a small red circle in the center", output_type="pt")
    seconds = (time.perf_counter() - start) / repeats
    return {"bench": "toy", "seconds": seconds, "markdown": f"# toy bench\n\n{seconds:.4f} s per call\n"}


BENCH = Bench("toy", bench_toy, "the toy method's sampling time",
              arguments=(BenchArgument("--pipeline", "pipeline", "toy pipeline folder"),
                         BenchArgument("--repeats", "repeats", "timed calls", int)))

register_method(
    "toy",
    components=[ToyTextModel],
    pipelines=[ToyPipeline],
    recipe_kinds={"toy": ToyBuilder},
    objectives={"toy_regression": ToyRegression},
    benches={"toy": BENCH},
    recipes=os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_recipes"),
    description="a toy text-to-image regressor (tests only)",
)
