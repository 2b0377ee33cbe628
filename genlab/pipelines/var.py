"""Next-scale pipelines: class labels -> one forward pass per scale (coarse to fine) -> multi-scale VQ decode.

`VARPipeline` drives a VARModel (block-causal attention, KV cache), `MVARPipeline` an MVARModel (intra-scale
attention + Mamba-2 state across scales); both are the ARPipeline loop (genlab's token sampler) with the tokenizer's
next-scale step in the model's decoding state. CFG follows VAR: the weight ramps linearly over the scales from 1
at the first to `guidance_scale` at the last (VAR's `cfg` c is guidance_scale = 1 + c; its FID setting c = 1.5 is
guidance_scale 2.5); `guidance_interval` instead guides only scales with lo < k / (K - 1) < hi at full weight.
"""

from __future__ import annotations

from ..errors import GenlabError, check_number
from ..schedulers import GuidanceSchedule
from .ar import ARPipeline


class VARPipeline(ARPipeline):
    """Components: `transformer` (VARModel) and `image_tokenizer` (MultiScaleVQTokenizer with the model's
    patch_nums, codebook and latent width). Call as ARPipeline: class_labels, guidance_scale, guidance_interval,
    temperature, top_k, top_p, generator, output_type, return_dict; `last_num_forward` = the number of scales."""

    def check_components(self):
        tok, model = self.image_tokenizer, self.transformer
        if not hasattr(tok, "next_scale_input"):
            raise GenlabError(f"{type(self).__name__} needs a multi-scale VQ image_tokenizer, got {type(tok).__name__}")
        for name, a, b in (("patch_nums", tuple(tok.patch_nums), tuple(model.patch_nums)),
                           ("codebook size / vocab_size", tok.codebook_size, model.config.vocab_size),
                           ("latent_channels", tok.latent_channels, model.config.latent_channels)):
            if a != b:
                raise GenlabError(f"tokenizer and transformer disagree on {name}: {a} vs {b}")

    def sampler_state(self) -> dict:
        return {"next_input": self.image_tokenizer.next_scale_input}

    def token_shape(self) -> tuple[int, ...]:
        return (self.transformer.num_tokens,)

    @staticmethod
    def guidance_schedule(guidance_scale, guidance_interval, guidance_max_tokens=None) -> GuidanceSchedule:
        if guidance_interval is None and guidance_max_tokens is None:
            return GuidanceSchedule(check_number(guidance_scale, "guidance_scale", minimum=0), "linear")
        return ARPipeline.guidance_schedule(guidance_scale, guidance_interval, guidance_max_tokens)


class MVARPipeline(VARPipeline):
    """Components: `transformer` (MVARModel) and `image_tokenizer` (MultiScaleVQTokenizer); as VARPipeline."""
