"""Class-conditional token AR pipelines: class labels -> KV-cached token sampling in the model's order -> VQ decode.

`ARPipeline` drives a raster next-token ARModel (LlamaGen; N forward passes for N tokens); `NARPipeline`
(pipelines/nar.py) drives a NARModel with the same code (2n - 1 passes for an n x n grid). The order, mask and
logit routing belong to the model; the sampler is `genlab.models.generate_tokens`.
"""

from __future__ import annotations

import torch

from ..errors import GenlabError
from ..models.sampling import check_sampling_args, generate_tokens
from .base import GenlabPipeline


class ARPipeline(GenlabPipeline):
    """Components: `transformer` (ARModel, or any model with `levels`, `new_state`, `decode_step`, `null_class`
    and a `grid_size` / `vocab_size` config) and `image_tokenizer` (a VQTokenizer whose codebook size is the
    model's vocab_size). After a call, `last_num_forward` holds the number of forward passes of that call."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    grid_dims = 2  # (h, w) token grids; NARVideoPipeline: (T, h, w)

    def __init__(self, transformer, image_tokenizer):
        super().__init__()
        self.register_modules(transformer=transformer, image_tokenizer=image_tokenizer)

    def check_components(self):
        tok, model = self.image_tokenizer, self.transformer
        if not getattr(tok, "is_discrete", False):
            raise GenlabError(f"{type(self).__name__} needs a discrete (VQ) image_tokenizer, got {type(tok).__name__}")
        if tok.codebook_size != model.config.vocab_size:
            raise GenlabError(f"tokenizer codebook size {tok.codebook_size} != transformer vocab_size "
                              f"{model.config.vocab_size}")
        if len(model.grid) != self.grid_dims:
            raise GenlabError(f"{type(self).__name__} decodes {self.grid_dims}-D token grids; this transformer has "
                              f"grid {tuple(model.grid)}")

    def sample_ids(self, class_labels, guidance_scale, guidance_interval, temperature, top_k, top_p, generator,
                   callback_on_step_end=None, guidance_max_tokens=None):
        """Checks, then KV-cached sampling in the model's order: (B, *grid) token ids. Sets last_num_forward.
        callback_on_step_end(pipe, step, level, {"tokens": (B, N) ids so far, -1 where not sampled yet}) is called
        after every forward pass (read-only: what it returns is not fed back)."""
        check_sampling_args(temperature, top_k, top_p)
        self.check_components()
        cfg = self.transformer.config
        device = self._execution_device
        labels = self.resolve_class_labels(class_labels, cfg.num_classes, cfg.get("class_names"), device)
        guidance = self.guidance_schedule(guidance_scale, guidance_interval, guidance_max_tokens)
        generator = self.check_generator(generator, len(labels))
        callback = None
        if callback_on_step_end is not None:
            def callback(step, level, partial):
                callback_on_step_end(self, step, level, {"tokens": partial})
        sample = generate_tokens(self.transformer, labels, guidance, temperature, top_k, top_p, generator,
                                 callback=callback, progress=self.progress_bar, state_kwargs=self.sampler_state())
        self.last_num_forward = sample.num_forward
        return sample.tokens.reshape(len(labels), *self.token_shape())

    def sampler_state(self) -> dict:
        """What the model's decoding state needs from the pipeline (VAR: the tokenizer's next-scale step)."""
        return {}

    def token_shape(self) -> tuple[int, ...]:
        """The shape of one sample's ids, as the tokenizer decodes them."""
        return tuple(self.transformer.grid)

    @torch.no_grad()
    def __call__(self, class_labels=None, guidance_scale: float = 2.0,
                 guidance_interval: tuple[float, float] | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None,
                 guidance_max_tokens: int | None = None):
        """Generate one image per entry of `class_labels` (ints or class names).

        guidance_scale: CFG weight on the logits (1 = none; [uncond ; cond] batches); guidance_interval: (lo, hi)
        to guide only while the fraction t of tokens already generated satisfies lo < t < hi; guidance_max_tokens: k
        to guide only steps that start with at most k tokens (the official NAR `--cfg-interval k`; the first step
        is always guided); temperature (0 =
        greedy argmax), top_k (0 = off), top_p (1 = off) filter the logits; generator: torch.Generator for all
        draws; callback_on_step_end: see `sample_ids`. Returns ImagePipelineOutput (or a tuple with
        return_dict=False).
        """
        self.check_output_type(output_type)
        ids = self.sample_ids(class_labels, guidance_scale, guidance_interval, temperature, top_k, top_p, generator,
                              callback_on_step_end, guidance_max_tokens)
        return self.image_output(self.image_tokenizer.decode(ids), output_type, return_dict)
