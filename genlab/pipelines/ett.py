"""ETT pipeline: prompt -> image by next-code prediction of a causal LM over the VQ tokenizer's codes, and image ->
caption with the same LM (`pipe.caption(images)`).

Components: `transformer` (ETTModel: projector, LlamaForCausalLM, visual head), `image_tokenizer` (the VQTokenizer
it was tuned with; ETT: the IBQ quantizer, tuned end to end in stage 2) and `text_tokenizer` (the word-level
PreTrainedTokenizerFast of genlab.text_tokenizer). Words outside the vocabulary are a one-line error.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import GenlabError, check_int, check_number, check_positive_int
from ..text_tokenizer import check_words
from .base import GenlabPipeline


class ETTPipeline(GenlabPipeline):
    model_cpu_offload_seq = "transformer->image_tokenizer"

    def __init__(self, transformer, image_tokenizer, text_tokenizer):
        super().__init__()
        self.register_modules(transformer=transformer, image_tokenizer=image_tokenizer, text_tokenizer=text_tokenizer)

    @classmethod
    def conditioning_for(cls, config: dict | None = None) -> tuple[str, ...]:
        return ("prompt",)

    def check_components(self):
        model, tok = self.transformer, self.image_tokenizer
        if not getattr(tok, "is_discrete", False):
            raise GenlabError(f"ETTPipeline needs a VQ image_tokenizer, got {type(tok).__name__}")
        c = model.config
        if (tok.codebook_size, tok.latent_channels) != (c.codebook_size, c.codebook_dim):
            raise GenlabError(f"the image_tokenizer has {tok.codebook_size} codes of {tok.latent_channels} dims, the "
                              f"transformer expects {c.codebook_size} of {c.codebook_dim}")
        if len(self.text_tokenizer) != c.text_vocab_size:
            raise GenlabError(f"the text_tokenizer has {len(self.text_tokenizer)} entries, the transformer's LM "
                              f"{c.text_vocab_size}")

    def encode_prompts(self, prompt) -> list[list[int]]:
        prompts = check_words(self.text_tokenizer, self.resolve_prompts(prompt))
        return [self.text_tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    @torch.no_grad()
    def __call__(self, prompt=None, guidance_scale: float = 3.0, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None):
        """Generate one image per prompt: h w codes in raster order, one LM pass each (KV cache); guidance_scale:
        CFG on the code logits against the empty prompt (1 = off); temperature (0 = greedy), top_k (0 = off),
        top_p (1 = off); callback_on_step_end(pipe, step, None, {"ids": (B, step + 1)}) after every code."""
        from ..models.sampling import check_sampling_args

        self.check_output_type(output_type)
        self.check_components()
        check_sampling_args(temperature, top_k, top_p)
        guidance = check_number(guidance_scale, "guidance_scale", minimum=0)
        prompts = self.encode_prompts(prompt)
        generator = self.check_generator(generator, len(prompts))
        if isinstance(generator, list):
            raise GenlabError("ETTPipeline draws every sample from one generator: pass a torch.Generator")
        callback = None
        if callback_on_step_end is not None:
            def callback(step, ids):
                callback_on_step_end(self, step, None, {"ids": ids})
        codebook = self.image_tokenizer.quantizer.codebook()
        ids = self.transformer.generate_codes(prompts, codebook, guidance, temperature, check_int(top_k, "top_k"),
                                              top_p, generator, callback=callback)
        self.last_num_forward = self.transformer.last_num_forward
        return self.image_output(self.image_tokenizer.decode(ids), output_type, return_dict)

    @property
    def caption_size(self) -> int:
        """The image side the model reads: its code grid times the tokenizer's downsampling."""
        return self.transformer.config.grid_size * self.image_tokenizer.downsample_factor

    @torch.no_grad()
    def caption(self, images, max_new_tokens: int = 12, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> list[str]:
        """Captions of images: PIL images of any size (resized to `caption_size`) or a (B, C, H, W) tensor in
        [-1, 1] of that size; greedy at temperature 0."""
        self.check_components()
        x = self.caption_inputs(images)
        tok = self.image_tokenizer
        z_q, ids, _ = tok.quantize(tok.encoder(tok.check_images(x)))
        model = self.transformer
        side = model.config.grid_size
        if ids.shape[-1] != side:
            raise GenlabError(f"these images give {ids.shape[-1]}x{ids.shape[-1]} codes; the model reads "
                              f"{side}x{side} (images of {side * tok.downsample_factor} px)")
        temperature = check_number(temperature, "temperature", minimum=0)
        words = model.caption(model.visual_embeds(z_q, ids), check_positive_int(max_new_tokens, "max_new_tokens"),
                              temperature, generator)
        return [self.text_tokenizer.decode(w) for w in words]

    def caption_inputs(self, images) -> torch.Tensor:
        """PIL image(s) (converted to the tokenizer's channels and resized to `caption_size`) or a tensor, as a
        (B, C, H, W) float tensor."""
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, (list, tuple)) and images and all(isinstance(i, Image.Image) for i in images):
            mode = "L" if self.image_tokenizer.image_channels == 1 else "RGB"
            side = self.caption_size
            images = [i.convert(mode) for i in images]
            images = [i if i.size == (side, side) else i.resize((side, side), Image.BICUBIC) for i in images]
            arrays = [np.asarray(i, dtype=np.float32).reshape(side, side, -1) for i in images]
            return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1
        if isinstance(images, torch.Tensor):
            return images
        raise GenlabError(f"caption takes PIL images or a (B, C, H, W) tensor in [-1, 1], got {type(images).__name__}")
