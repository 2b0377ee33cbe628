"""MAR and Hi-MAR pipelines: a condition (class labels, or prompts through the MiniLM text encoder) -> masked
autoregressive generation of continuous tokens -> the tokenizer's decode -> images.

One pipeline class serves class- and text-conditioned models: which of `class_labels` / `prompt` it takes follows
the model's config (`text_dim`), and the text encoder is an optional component (absent for class models).
"""

from __future__ import annotations

import torch

from ..errors import GenlabError, check_number, check_positive_int
from .base import GenlabPipeline


class MARPipeline(GenlabPipeline):
    """Components: `transformer` (MARModel), `image_tokenizer` (a continuous tokenizer whose latents are the model's
    in_channels x sample_size^2) and, for text-conditioned models, `text_encoder` (MiniLMTextEncoder).
    After a call, `last_counts` holds the backbone and head passes of that call."""

    model_cpu_offload_seq = "text_encoder->transformer->image_tokenizer"
    _optional_components = ["text_encoder"]

    def __init__(self, transformer, image_tokenizer, text_encoder=None):
        super().__init__()
        self.register_modules(transformer=transformer, image_tokenizer=image_tokenizer, text_encoder=text_encoder)

    @classmethod
    def conditioning_for(cls, config: dict | None = None) -> tuple[str, ...]:
        if config is None:
            return super().conditioning_for(config)
        return ("prompt",) if config.get("text_dim") else ("class_labels",)

    def check_components(self):
        cfg = self.transformer.config
        self.check_continuous_tokenizer(cfg.in_channels)
        if cfg.text_dim and self.text_encoder is None:
            raise GenlabError("this transformer is text-conditioned but the pipeline has no text_encoder")
        if cfg.text_dim and self.text_encoder.hidden_size != cfg.text_dim:
            raise GenlabError(f"the text_encoder gives {self.text_encoder.hidden_size}-d states, the transformer "
                              f"expects {cfg.text_dim}")

    def buffers(self, class_labels, prompt, guided: bool):
        """(condition buffer (B, b, D), null buffer or None) for the call's conditioning."""
        model = self.transformer
        device = self._execution_device
        if model.conditioning == "class":
            if prompt is not None:
                raise GenlabError("this model is class-conditional: pass class_labels, not prompt")
            labels = self.resolve_class_labels(class_labels, model.config.num_classes,
                                               model.config.get("class_names"), device)
            buffer = model.condition(class_labels=labels)
        else:
            if class_labels is not None:
                raise GenlabError("this model is text-conditioned: pass prompt, not class_labels")
            text = self.text_encoder.encode(self.resolve_prompts(prompt))
            buffer = model.condition(text=text.hidden_states.to(device), text_mask=text.attention_mask.to(device))
        return buffer, (model.null_condition(buffer.shape[0]) if guided else None)

    def check_call(self, num_inference_steps, guidance_scale, temperature, head_steps, generator, batch_size,
                   output_type):
        self.check_output_type(output_type)
        steps = check_positive_int(num_inference_steps, "num_inference_steps")
        if steps > self.transformer.num_tokens:
            raise GenlabError(f"num_inference_steps={steps} is more than the {self.transformer.num_tokens} tokens "
                              "(every step reveals at least one)")
        guidance = check_number(guidance_scale, "guidance_scale", minimum=0)
        temperature = check_number(temperature, "temperature", minimum=0, strict_minimum=True)
        if head_steps is not None:
            head_steps = check_positive_int(head_steps, "head_steps")
            if head_steps > 1000:
                raise GenlabError(f"head_steps={head_steps}: the head's chain has 1000 training steps")
        generator = self.check_generator(generator, batch_size)
        if isinstance(generator, list):
            raise GenlabError(f"{type(self).__name__} draws every sample from one generator: pass a torch.Generator")
        return steps, guidance, temperature, head_steps, generator

    def decode(self, tokens, output_type, return_dict):
        latents = self.transformer.latents_from_tokens(tokens)
        return self.image_output(self.image_tokenizer.decode(latents), output_type, return_dict)

    @torch.no_grad()
    def __call__(self, class_labels=None, prompt=None, num_inference_steps: int = 16, guidance_scale: float = 3.0,
                 temperature: float = 1.0, head_steps: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None):
        """Generate one image per class label (class models) or prompt (text models).

        num_inference_steps: reveal steps K (cosine schedule, <= the number of tokens); guidance_scale: CFG weight,
        ramped linearly with the tokens revealed (MAR); temperature: the head's noise scale; head_steps: the
        diffusion head's respaced chain (default: the model's head_steps); callback_on_step_end(pipe, step,
        None, {"tokens", "revealed"}) after every step (read-only)."""
        self.check_components()
        rows = len(class_labels) if isinstance(class_labels, (list, tuple)) else len(prompt) if isinstance(
            prompt, (list, tuple)) else 1
        steps, guidance, temperature, head_steps, generator = self.check_call(
            num_inference_steps, guidance_scale, temperature, head_steps, generator, rows, output_type)
        buffer, null = self.buffers(class_labels, prompt, guidance != 1.0)
        callback = None
        if callback_on_step_end is not None:
            def callback(step, revealed, tokens):
                callback_on_step_end(self, step, None, {"tokens": tokens, "revealed": revealed})
        tokens = self.transformer.sample(buffer, null, steps, guidance, temperature, generator, head_steps,
                                         progress=self.progress_bar, callback=callback)
        return self.decode(tokens, output_type, return_dict)


class HiMARPipeline(MARPipeline):
    """Components as MARPipeline, with a HiMARModel: phase 1 generates the low-res pivots (K1 = 4 x the low-res
    side steps, MLP head), phase 2 the dense tokens in `num_inference_steps` steps (DiT head)."""

    @torch.no_grad()
    def __call__(self, class_labels=None, prompt=None, num_inference_steps: int = 4, guidance_scale: float = 3.0,
                 temperature: float = 1.0, head_steps: int | None = None, generator: torch.Generator | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 phase1_guidance_scale: float | None = None, head2_steps: int | None = None):
        """As MARPipeline, with num_inference_steps = K2 (the dense phase; Hi-MAR needs few), guidance_scale the
        dense phase's CFG and phase1_guidance_scale the low-res phase's (default: the same), head_steps the
        low-res MLP head's chain and head2_steps the DiT head's."""
        self.check_components()
        rows = len(class_labels) if isinstance(class_labels, (list, tuple)) else len(prompt) if isinstance(
            prompt, (list, tuple)) else 1
        steps, guidance, temperature, head_steps, generator = self.check_call(
            num_inference_steps, guidance_scale, temperature, head_steps, generator, rows, output_type)
        w1 = guidance if phase1_guidance_scale is None else check_number(phase1_guidance_scale,
                                                                        "phase1_guidance_scale", minimum=0)
        if head2_steps is not None:
            head2_steps = check_positive_int(head2_steps, "head2_steps")
        buffer, null = self.buffers(class_labels, prompt, guidance != 1.0 or w1 != 1.0)
        callback = None
        if callback_on_step_end is not None:
            def callback(step, revealed, tokens):
                callback_on_step_end(self, step, None, {"tokens": tokens, "revealed": revealed})
        tokens = self.transformer.sample(buffer, null, steps, guidance, temperature, generator, head_steps,
                                         progress=self.progress_bar, callback=callback, phase1_guidance=w1,
                                         head2_steps=head2_steps)
        return self.decode(tokens, output_type, return_dict)


class TokenBridgePipeline(MARPipeline):
    """Components as MARPipeline, with a TokenBridgeModel: MAR's reveal schedule over dimension-wise quantized tokens,
    each revealed token's C indices drawn channel by channel by the AR head; CFG mixes the backbone states (MAR's
    linear ramp). There is no diffusion chain, so no head_steps."""

    @torch.no_grad()
    def __call__(self, class_labels=None, prompt=None, num_inference_steps: int = 16, guidance_scale: float = 3.0,
                 temperature: float = 1.0, generator: torch.Generator | None = None, output_type: str = "pil",
                 return_dict: bool = True, callback_on_step_end=None):
        """As MARPipeline: num_inference_steps reveal steps (cosine schedule), guidance_scale (CFG on the backbone
        states, ramped linearly), temperature of the channel softmaxes."""
        return MARPipeline.__call__(self, class_labels, prompt, num_inference_steps, guidance_scale, temperature,
                                    None, generator, output_type, return_dict, callback_on_step_end)
