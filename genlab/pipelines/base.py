"""What every genlab pipeline shares: input checks with clear errors, the conditioning (class labels and/or
prompts), classifier-free guidance batching, step callbacks, post-processing and the output classes.

Outputs are diffusers' `ImagePipelineOutput` (images: PIL list, (B, C, H, W) tensor in [0, 1] or (B, H, W, C)
array); diffusers has no generic video output, so videos come as `GenlabVideoOutput` (frames). Images are
post-processed by diffusers' `VaeImageProcessor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from .. import diffusers_integration
from ..errors import GenlabError, check_int, check_number, check_positive_int
from ..schedulers import GuidanceSchedule, cfg_combine, cfg_labels
from .loading import call_parameters

diffusers_integration.register_library()

OUTPUT_TYPES = ("pil", "pt", "np")
#: The most sampling steps a call accepts: bounds the work a typo can start (1e6 steps would run for hours).
MAX_INFERENCE_STEPS = 1000
#: Conditioning arguments a pipeline's __call__ may take; user interfaces read which from the signature.
CONDITIONING_INPUTS = ("class_labels", "prompt")


@dataclass
class GenlabVideoOutput(BaseOutput):
    """frames: one list of PIL frames per clip, a (B, T, C, H, W) tensor in [0, 1] ("pt") or a (B, T, H, W, C)
    array ("np"). Write a clip with `genlab.utils.save_video(frames[i], "clip.gif")`."""

    frames: list[list[PIL.Image.Image]] | torch.Tensor | np.ndarray


class GenlabPipeline(DiffusionPipeline):
    """Base class: validation, conditioning, CFG, callbacks and output conversion. Subclasses implement __call__.

    User interfaces (the Gradio demo, the CLI, `genlab eval`) have no per-method code: what a pipeline accepts is
    read from the signature of its __call__ (`conditioning_inputs`), and its acceleration switch from the three
    class attributes below.
    """

    #: The method's acceleration switch: call argument -> allowed values, the first being the default "on" value
    #: (e.g. DDT: {"sharing": ["statdp", "uniform"], "refresh_rate": [2, 3, 4, 5]}). Empty: no switch.
    acceleration_choices: dict = {}
    #: The call arguments that turn the trick off (the plain path it must equal), e.g. {"sharing": "none"}.
    acceleration_off: dict = {}
    #: One line naming the trick for a user interface, e.g. "encoder sharing".
    acceleration_label: str = ""
    #: The component whose config holds num_classes / class_names (None: the pipeline's own config).
    conditioning_component: str | None = "transformer"
    #: True for pipelines whose output is GenlabVideoOutput (frames) rather than images.
    produces_video: bool = False

    # ------------------------------------------------------------ what the pipeline takes
    @classmethod
    def conditioning_for(cls, config: dict | None = None) -> tuple[str, ...]:
        """Which of `class_labels` and `prompt` a pipeline of this class takes, read from its __call__ signature;
        a class whose __call__ offers both for models of either kind narrows it by the conditioning component's
        config (`config`, a dict; None = unknown)."""
        params = call_parameters(cls)
        return tuple(name for name in CONDITIONING_INPUTS if name in params)

    def condition_config(self) -> dict | None:
        """The config that says how this pipeline is conditioned (num_classes, class_names, text_dim, ...): that of
        its `conditioning_component`, or the pipeline's own (model_index.json) where that is None."""
        if self.conditioning_component is None:
            return dict(self.config)
        component = getattr(self, self.conditioning_component, None)
        return dict(component.config) if component is not None else None

    def conditioning_inputs(self) -> tuple[str, ...]:
        """What this pipeline, with its components, is conditioned on."""
        return self.conditioning_for(self.condition_config())

    @property
    def num_classes(self) -> int | None:
        return (self.condition_config() or {}).get("num_classes")

    @property
    def class_names(self) -> list[str] | None:
        return (self.condition_config() or {}).get("class_names")

    # ------------------------------------------------------------ checks
    @staticmethod
    def check_steps(num_inference_steps) -> int:
        steps = check_positive_int(num_inference_steps, "num_inference_steps")
        if steps > MAX_INFERENCE_STEPS:
            raise GenlabError(f"num_inference_steps={steps} is more than the {MAX_INFERENCE_STEPS} a call may take")
        return steps

    def check_continuous_tokenizer(self, channels: int, model: str = "transformer"):
        """The image_tokenizer must decode what `model` generates: continuous latents with `channels` channels."""
        tok = self.image_tokenizer
        if getattr(tok, "is_discrete", False):
            raise GenlabError(f"{type(self).__name__} needs a continuous image_tokenizer (pixels or kl), got "
                              f"{type(tok).__name__}")
        if tok.latent_channels != channels:
            raise GenlabError(f"the image_tokenizer ({type(tok).__name__}) has {tok.latent_channels} latent channels "
                              f"but the {model} generates {channels}: the components do not belong together")

    @staticmethod
    def check_output_type(output_type: str):
        if output_type not in OUTPUT_TYPES:
            raise GenlabError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    @staticmethod
    def resolve_class_labels(class_labels, num_classes: int, class_names: list | None, device) -> torch.Tensor:
        """Turn an int, a name or a list of ints/names into a (B,) long tensor; unknown or out-of-range → GenlabError."""
        if class_labels is None:
            raise GenlabError("class_labels is required: pass a class id (0.."
                              f"{num_classes - 1}) or a list of them")
        if isinstance(class_labels, torch.Tensor):
            class_labels = class_labels.reshape(-1).tolist()
        if isinstance(class_labels, (int, str, np.integer)):
            class_labels = [class_labels]
        if len(class_labels) == 0:
            raise GenlabError("class_labels is empty")
        ids = []
        for label in class_labels:
            if isinstance(label, str):
                names = list(class_names or [])
                if label in names:
                    ids.append(names.index(label))
                    continue
                if label.lstrip("-").isdigit():
                    label = int(label)
                else:
                    raise GenlabError(f"unknown class name {label!r}; known classes: {names}")
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise GenlabError(f"class label must be an int or a class name, got {label!r}")
            if not 0 <= int(label) < num_classes:
                raise GenlabError(f"class label {int(label)} is out of range: this model has classes 0..{num_classes - 1}")
            ids.append(int(label))
        return torch.tensor(ids, dtype=torch.long, device=device)

    @staticmethod
    def resolve_prompts(prompt) -> list[str]:
        """A prompt or a list of prompts -> a non-empty list of non-empty strings."""
        if prompt is None:
            raise GenlabError("prompt is required: pass a text or a list of texts")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else None
        if prompts is None:
            raise GenlabError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
        if not prompts:
            raise GenlabError("prompt is an empty list")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise GenlabError(f"every prompt must be a non-empty string, got {p!r}")
        return prompts

    @staticmethod
    def guidance_schedule(guidance_scale, guidance_interval, guidance_max_tokens=None) -> GuidanceSchedule:
        """CFG scale everywhere, or only for lo < t < hi when an interval (lo, hi) is given (t = 0 noise), or (token
        models) only while at most `guidance_max_tokens` tokens exist."""
        scale = check_number(guidance_scale, "guidance_scale", minimum=0)
        if guidance_max_tokens is not None:
            if guidance_interval is not None:
                raise GenlabError("pass guidance_interval or guidance_max_tokens, not both")
            return GuidanceSchedule(scale, "tokens", max_tokens=check_int(guidance_max_tokens, "guidance_max_tokens",
                                                                         minimum=0))
        if guidance_interval is None:
            return GuidanceSchedule(scale)
        if not isinstance(guidance_interval, (list, tuple)) or len(guidance_interval) != 2:
            raise GenlabError(f"guidance_interval must be a pair (lo, hi), got {guidance_interval!r}")
        lo, hi = (check_number(v, "guidance_interval") for v in guidance_interval)
        return GuidanceSchedule(scale, "interval", (lo, hi))

    @staticmethod
    def check_generator(generator, batch_size: int):
        """What diffusers accepts: None, a torch.Generator, or a list of them with one per sample."""
        if generator is None or isinstance(generator, torch.Generator):
            return generator
        if isinstance(generator, (list, tuple)):
            if not generator or not all(isinstance(g, torch.Generator) for g in generator):
                raise GenlabError("generator must be a torch.Generator or a non-empty list of torch.Generators")
            if len(generator) != batch_size:
                raise GenlabError(f"a list of generators needs one per sample: got {len(generator)} for a batch of "
                                  f"{batch_size}")
            return list(generator)
        raise GenlabError(f"generator must be a torch.Generator or a list of them (one per sample), got "
                          f"{type(generator).__name__}; e.g. torch.Generator().manual_seed(0)")

    @staticmethod
    def prepare_latents(shape: tuple, generator, latents, device, dtype) -> torch.Tensor:
        """The initial noise: drawn from `generator`, or the caller's `latents` after a shape check."""
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if tuple(latents.shape) != tuple(shape):
            raise GenlabError(f"latents must have shape {tuple(shape)}, got {tuple(latents.shape)}")
        return latents.to(device=device, dtype=dtype)

    def class_conditional_inputs(self, class_labels, num_inference_steps, guidance_scale, guidance_interval,
                                 generator, latents, output_type):
        """The checks and set-up every class-conditional continuous pipeline starts with.

        Returns (steps, labels (B,), GuidanceSchedule, initial noise (B, C, H, W)) for `self.transformer`'s config.
        """
        steps = self.check_steps(num_inference_steps)
        self.check_output_type(output_type)
        cfg = self.transformer.config
        device = self._execution_device
        labels = self.resolve_class_labels(class_labels, cfg.num_classes, cfg.get("class_names"), device)
        guidance = self.guidance_schedule(guidance_scale, guidance_interval)
        generator = self.check_generator(generator, len(labels))
        shape = (len(labels), cfg.in_channels, cfg.sample_size, cfg.sample_size)
        x = self.prepare_latents(shape, generator, latents, device, self.transformer.dtype)
        return steps, labels, guidance, x

    # ------------------------------------------------------------ guidance and callbacks
    @staticmethod
    def cfg_batch(x: torch.Tensor, labels: torch.Tensor, null_id: int, doubled: bool):
        """The model inputs of one guided evaluation: ([x ; x], [null ; labels]) when doubled, else (x, labels)."""
        return (torch.cat([x, x]), cfg_labels(labels, null_id)) if doubled else (x, labels)

    @staticmethod
    def cfg_output(out: torch.Tensor, scale: float, doubled: bool) -> torch.Tensor:
        """The guided output of a (possibly doubled) evaluation."""
        return cfg_combine(out, scale) if doubled else out

    def step_callback(self, callback_on_step_end, tensor_inputs, step: int, timestep, tensors: dict) -> dict:
        """diffusers' `callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict`: it sees the named
        tensors of this step and may replace them; returns the (possibly replaced) tensors."""
        if callback_on_step_end is None:
            return tensors
        unknown = sorted(set(tensor_inputs) - set(tensors))
        if unknown:
            raise GenlabError(f"callback_on_step_end_tensor_inputs {unknown} are not available; this pipeline "
                              f"passes {sorted(tensors)}")
        out = callback_on_step_end(self, step, timestep, {k: tensors[k] for k in tensor_inputs}) or {}
        return {**tensors, **{k: v for k, v in out.items() if k in tensors}}

    # ------------------------------------------------------------ outputs
    @staticmethod
    def postprocess(images: torch.Tensor, output_type: str):
        """images in [-1, 1] (B, C, H, W) -> the requested output type, values in [0, 1] / uint8 for PIL."""
        processor = VaeImageProcessor(do_normalize=True)
        images = processor.postprocess(images.detach().float().clamp(-1, 1).cpu(), output_type=output_type)
        return images

    def image_output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        """Decoded images in [-1, 1] -> ImagePipelineOutput (or a tuple), with model offload hooks released."""
        self.maybe_free_model_hooks()
        images = self.postprocess(images, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def video_output(self, frames: torch.Tensor, num_clips: int, output_type: str, return_dict: bool):
        """Decoded frames (B * T, C, H, W) in [-1, 1], clip-major -> GenlabVideoOutput (or a tuple)."""
        self.maybe_free_model_hooks()
        frames = self.postprocess(frames, output_type)
        per_clip = len(frames) // num_clips
        if output_type == "pil":
            frames = [frames[i * per_clip:(i + 1) * per_clip] for i in range(num_clips)]
        else:
            frames = frames.reshape(num_clips, per_clip, *frames.shape[1:])
        return GenlabVideoOutput(frames=frames) if return_dict else (frames,)
