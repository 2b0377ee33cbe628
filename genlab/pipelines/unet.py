"""Pipelines around diffusers' own UNets (Faster Diffusion's base models): noise -> a diffusers scheduler (DDIM by
default; DDPM and DPM-Solver++ load with `from_config`) with classifier-free guidance -> the tokenizer's decode.

* `UNetPipeline`: images from a class-conditional `UNet2DModel` (`num_class_embeds` = classes + 1, the last id the
  null class of CFG) or a text-conditional `UNet2DConditionModel` (cross-attention on the MiniLM token states; the
  empty prompt is the null condition, as in Stable Diffusion).
* `UNetVideoPipeline`: clips from a text-conditional `UNet3DConditionModel` over (B, C, T, H, W) latents.

The class names live in the pipeline's own config (model_index.json): the UNet stays diffusers' class with
diffusers' config. The acceleration switch is `key_steps`: None samples plainly; a preset, an int or a list turns on
encoder propagation (genlab.acceleration.encoder_propagation) for this call only.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from ..errors import GenlabError, check_number
from .base import GenlabPipeline

CLASS_UNETS = ("UNet2DModel",)
TEXT_UNETS = ("UNet2DConditionModel", "UNet3DConditionModel")


def unet_conditioning(unet) -> str:
    """'class' or 'text', from the UNet's class (and, for UNet2DModel, that it has class embeddings)."""
    name = type(unet).__name__
    if name in TEXT_UNETS:
        return "text"
    if name in CLASS_UNETS and unet.config.get("num_class_embeds"):
        return "class"
    raise GenlabError(f"a UNet pipeline needs a class-conditional UNet2DModel (num_class_embeds set) or a "
                      f"{' / '.join(TEXT_UNETS)}, got {name}")


def text_condition(unet, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """The UNet's keyword arguments for text states: cross-attention context, and the padding mask where the UNet
    takes one (UNet3DConditionModel's forward has none)."""
    cond = {"encoder_hidden_states": hidden_states.to(device=unet.device, dtype=unet.dtype)}
    if "encoder_attention_mask" in inspect.signature(unet.forward).parameters:
        cond["encoder_attention_mask"] = attention_mask.to(unet.device)
    return cond


class UNetPipeline(GenlabPipeline):
    """Components: `unet` (diffusers UNet2DModel with class embeddings, or UNet2DConditionModel), `scheduler` (a
    first-order diffusers scheduler: DDIM, DDPM, DPM-Solver++ multistep), `image_tokenizer` (pixels or kl) and, for
    text UNets, `text_encoder` (MiniLMTextEncoder). Config: `class_names` of a class UNet."""

    model_cpu_offload_seq = "text_encoder->unet->image_tokenizer"
    _optional_components = ["text_encoder"]
    conditioning_component = None  # the pipeline's own config holds num_classes / class_names
    acceleration_choices = {"key_steps": ["50ls", "pro", "uniform:3"], "parallel": [True, False]}
    acceleration_off = {"key_steps": None}
    acceleration_label = "encoder propagation (Faster Diffusion)"

    def __init__(self, unet, scheduler, image_tokenizer, text_encoder=None, class_names: list | None = None,
                 num_classes: int | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, image_tokenizer=image_tokenizer,
                              text_encoder=text_encoder)
        if unet is not None:
            # num_classes is derived from the UNet; it is saved beside class_names so that a user interface reads
            # both from model_index.json without loading the model.
            derived = unet.config.num_class_embeds - 1 if unet_conditioning(unet) == "class" else None
            if num_classes is not None and num_classes != derived:
                raise GenlabError(f"num_classes={num_classes} but the UNet has {derived} classes")
            num_classes = derived
            if class_names is not None and len(class_names) != num_classes:
                raise GenlabError(f"class_names has {len(class_names)} names but the UNet has {num_classes} classes")
        self.register_to_config(class_names=list(class_names) if class_names is not None else None,
                                num_classes=num_classes)

    # ------------------------------------------------------------ conditioning
    @classmethod
    def conditioning_for(cls, config: dict | None = None) -> tuple[str, ...]:
        if config is None:
            return super().conditioning_for(config)
        return ("class_labels",) if config.get("num_classes") else ("prompt",)

    @property
    def null_class(self) -> int:
        return self.unet.config.num_class_embeds - 1

    def check_components(self):
        kind = unet_conditioning(self.unet)
        self.check_continuous_tokenizer(self.unet.config.in_channels, "UNet")
        if kind == "text":
            if self.text_encoder is None:
                raise GenlabError("this UNet is text-conditioned but the pipeline has no text_encoder")
            if self.text_encoder.hidden_size != self.unet.config.cross_attention_dim:
                raise GenlabError(f"the text_encoder gives {self.text_encoder.hidden_size}-d states, the UNet "
                                  f"attends to {self.unet.config.cross_attention_dim}")
        return kind

    def condition(self, kind: str, class_labels, prompt, guided: bool) -> tuple[dict, int]:
        """The UNet's conditioning keyword arguments for the (possibly CFG-doubled: [null ; cond]) batch, and B."""
        device = self._execution_device
        if kind == "class":
            if prompt is not None:
                raise GenlabError("this UNet is class-conditional: pass class_labels, not prompt")
            labels = self.resolve_class_labels(class_labels, self.config.num_classes, self.config.class_names, device)
            if guided:
                labels = torch.cat([torch.full_like(labels, self.null_class), labels])
            return {"class_labels": labels}, len(labels) // (2 if guided else 1)
        if class_labels is not None:
            raise GenlabError("this UNet is text-conditioned: pass prompt, not class_labels")
        prompts = self.resolve_prompts(prompt)
        text = self.text_encoder.encode(([""] * len(prompts) if guided else []) + prompts)
        return text_condition(self.unet, text.hidden_states, text.attention_mask), len(prompts)

    # ------------------------------------------------------------ sampling
    def latent_shape(self, batch_size: int) -> tuple:
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return (batch_size, self.unet.config.in_channels, *size)

    def denoise(self, x, cond: dict, guidance: float, guided: bool, eta, generator, callback_on_step_end,
                tensor_inputs):
        params = inspect.signature(self.scheduler.step).parameters  # DDIM takes eta; DDPM, DPM-Solver++ do not
        extra = {k: v for k, v in {"eta": eta, "generator": generator}.items() if k in params}
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            x_in = torch.cat([x, x]) if guided else x
            x_in = self.scheduler.scale_model_input(x_in, t)
            eps = self.unet(x_in, t, **cond).sample
            if guided:
                eps = self.cfg_output(eps, guidance, True)
            x = self.scheduler.step(eps, t, x, **extra).prev_sample
            x = self.step_callback(callback_on_step_end, tensor_inputs, i, t, {"latents": x})["latents"]
        return x

    def decode(self, latents, output_type, return_dict):
        return self.image_output(self.image_tokenizer.decode(latents), output_type, return_dict)

    def run(self, class_labels, prompt, num_inference_steps, guidance_scale, eta, generator, latents, output_type,
            return_dict, callback_on_step_end, callback_on_step_end_tensor_inputs, key_steps, parallel):
        kind = self.check_components()
        steps = self.check_steps(num_inference_steps)
        self.check_output_type(output_type)
        guidance = check_number(guidance_scale, "guidance_scale", minimum=0)
        eta = check_number(eta, "eta", minimum=0)
        guided = guidance != 1.0
        cond, batch = self.condition(kind, class_labels, prompt, guided)
        generator = self.check_generator(generator, batch)
        device = self._execution_device
        x = self.prepare_latents(self.latent_shape(batch), generator, latents, device, self.unet.dtype)
        propagation = contextlib.nullcontext()
        if key_steps is not None:
            from ..acceleration.encoder_propagation import encoder_propagation, get_encoder_propagation

            if get_encoder_propagation(self) is not None:
                raise GenlabError("encoder propagation is already applied to this pipeline: call it without "
                                  "key_steps, or remove_encoder_propagation(pipe) first")
            propagation = encoder_propagation(self, key_steps=key_steps, parallel=bool(parallel))
        with propagation:  # set_timesteps inside: the hook starts its run there
            self.scheduler.set_timesteps(steps, device=device)
            x = self.denoise(x * self.scheduler.init_noise_sigma, cond, guidance, guided, eta, generator,
                             callback_on_step_end, callback_on_step_end_tensor_inputs)
        return self.decode(x, output_type, return_dict)

    @torch.no_grad()
    def __call__(self, class_labels=None, prompt=None, num_inference_steps: int = 50, guidance_scale: float = 3.0,
                 eta: float = 0.0, generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ("latents",), key_steps=None, parallel: bool = True):
        """Generate one image per class label (class UNets) or prompt (text UNets).

        guidance_scale: CFG weight (1 = none); eta: DDIM's noise (0 = deterministic); key_steps: None for the plain
        sampler, or encoder propagation's key steps ("50ls" for 50 steps, "pro", an int m = every m-th step, or a
        list starting at 0), with `parallel` batching the decoders of one key step's group into one forward."""
        return self.run(class_labels, prompt, num_inference_steps, guidance_scale, eta, generator, latents,
                        output_type, return_dict, callback_on_step_end, callback_on_step_end_tensor_inputs,
                        key_steps, parallel)


class UNetVideoPipeline(UNetPipeline):
    """Components as UNetPipeline with a text-conditional `UNet3DConditionModel`; the tokenizer decodes frame by
    frame. Config `num_frames`: the clip length it was trained on."""

    produces_video = True

    def __init__(self, unet, scheduler, image_tokenizer, text_encoder=None, class_names: list | None = None,
                 num_classes: int | None = None, num_frames: int = 4):
        super().__init__(unet, scheduler, image_tokenizer, text_encoder, class_names, num_classes)
        self.register_to_config(num_frames=int(num_frames))

    def check_components(self):
        if type(self.unet).__name__ != "UNet3DConditionModel":
            raise GenlabError(f"{type(self).__name__} needs a UNet3DConditionModel, got {type(self.unet).__name__}")
        return super().check_components()

    def latent_shape(self, batch_size: int) -> tuple:
        c, h, w = super().latent_shape(batch_size)[1:]
        return (batch_size, c, self.config.num_frames, h, w)

    def decode(self, latents, output_type, return_dict):
        b, c, t, h, w = latents.shape
        frames = self.image_tokenizer.decode(latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return self.video_output(frames, b, output_type, return_dict)

    @torch.no_grad()
    def __call__(self, prompt=None, num_inference_steps: int = 50, guidance_scale: float = 3.0, eta: float = 0.0,
                 generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ("latents",), key_steps=None, parallel: bool = True):
        """Generate one clip per prompt; arguments as UNetPipeline."""
        return self.run(None, prompt, num_inference_steps, guidance_scale, eta, generator, latents, output_type,
                        return_dict, callback_on_step_end, callback_on_step_end_tensor_inputs, key_steps, parallel)
