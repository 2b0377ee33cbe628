"""Class-conditional flow-matching DiT pipeline: noise -> (Euler/Heun ODE with CFG) -> tokenizer.decode -> images."""

from __future__ import annotations

import torch

from ..schedulers import GuidanceSchedule, apply_cfg
from .base import GenlabImageOutput, GenlabPipeline


class FlowDiTPipeline(GenlabPipeline):
    """Components: `transformer` (DiTModel or any model with forward(x, t, class_labels) -> velocity and a
    `null_class`), `scheduler` (FlowMatchScheduler), `image_tokenizer` (PixelTokenizer or KLTokenizer)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"

    def __init__(self, transformer, scheduler, image_tokenizer):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, image_tokenizer=image_tokenizer)

    @property
    def class_names(self) -> list[str] | None:
        return self.transformer.config.get("class_names")

    def velocity(self, x, t, labels, guidance: GuidanceSchedule):
        """One (possibly CFG-doubled) model evaluation at time t (a Python float, shared by the batch)."""
        scale = guidance(t)
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
        if scale == 1.0:
            return self.transformer(x, tt, labels)
        null = torch.full_like(labels, self.transformer.null_class)
        v = self.transformer(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([null, labels]))
        v_uncond, v_cond = v.chunk(2)
        return apply_cfg(v_uncond, v_cond, scale)

    @torch.no_grad()
    def __call__(self, class_labels=None, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                 guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True):
        """Generate one image per entry of `class_labels` (ints or class names).

        guidance_scale: CFG weight (1 = no guidance); guidance_interval: (lo, hi) to guide only for lo < t < hi
        (t = 0 noise, 1 data); generator: torch.Generator for the initial noise; latents: start noise yourself.
        """
        steps, labels, guidance, x = self.class_conditional_inputs(
            class_labels, num_inference_steps, guidance_scale, guidance_interval, generator, latents, output_type)
        device = self._execution_device

        self.scheduler.set_timesteps(steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            v = self.velocity(x, float(t), labels, guidance)
            x = self.scheduler.step(v, t, x).prev_sample

        images = self.image_tokenizer.decode(x)
        self.maybe_free_model_hooks()
        images = self.to_output(images, output_type)
        return GenlabImageOutput(images=images) if return_dict else (images,)
