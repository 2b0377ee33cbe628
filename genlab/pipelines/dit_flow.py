"""Class-conditional flow-matching DiT pipeline: noise -> (Euler/Heun ODE with CFG) -> tokenizer.decode -> images."""

from __future__ import annotations

import torch

from ..schedulers import GuidanceSchedule
from .base import GenlabPipeline


class FlowDiTPipeline(GenlabPipeline):
    """Components: `transformer` (DiTModel or any model with forward(x, t, class_labels) -> output with `.sample`
    (the velocity) and a `null_class`), `scheduler` (FlowMatchScheduler), `image_tokenizer` (PixelTokenizer or
    KLTokenizer)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    #: Guide with a doubled batch at every step once guidance is on anywhere (DDT: its cached self-condition must
    #: hold both halves from the same step), rather than only at steps whose scale differs from 1.
    double_every_step = False

    def __init__(self, transformer, scheduler, image_tokenizer):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, image_tokenizer=image_tokenizer)

    def check_components(self):
        """The tokenizer must decode what the transformer generates: continuous latents of its channel count."""
        self.check_continuous_tokenizer(self.transformer.config.in_channels)

    def denoise(self, x, labels, guidance: GuidanceSchedule, callback_on_step_end=None,
                callback_on_step_end_tensor_inputs=("latents",)):
        """Run the scheduler (already set) from the noise x to the final latents, with CFG at scale guidance(t)."""
        model = self.transformer
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            t = float(t)
            scale = guidance(t)
            doubled = guidance.active if self.double_every_step else scale != 1.0
            x_in, labels_in = self.cfg_batch(x, labels, model.null_class, doubled)
            v = model(x_in, torch.full((x_in.shape[0],), t, device=x.device, dtype=x.dtype), labels_in).sample
            x = self.scheduler.step(self.cfg_output(v, scale, doubled), t, x).prev_sample
            x = self.step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, i, t,
                                   {"latents": x})["latents"]
        return x

    @torch.no_grad()
    def __call__(self, class_labels=None, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                 guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 callback_on_step_end=None, callback_on_step_end_tensor_inputs: list[str] = ("latents",)):
        """Generate one image per entry of `class_labels` (ints or class names).

        guidance_scale: CFG weight (1 = no guidance); guidance_interval: (lo, hi) to guide only for lo < t < hi
        (t = 0 noise, 1 data); generator: torch.Generator for the initial noise; latents: start noise yourself;
        callback_on_step_end(pipe, step, t, {"latents": x}) may return replaced latents (diffusers' convention).
        """
        self.check_components()
        steps, labels, guidance, x = self.class_conditional_inputs(
            class_labels, num_inference_steps, guidance_scale, guidance_interval, generator, latents, output_type)
        self.scheduler.set_timesteps(steps, device=self._execution_device)
        x = self.denoise(x, labels, guidance, callback_on_step_end, callback_on_step_end_tensor_inputs)
        return self.image_output(self.image_tokenizer.decode(x), output_type, return_dict)
