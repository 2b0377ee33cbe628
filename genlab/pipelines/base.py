"""What every genlab pipeline shares: input checks with clear errors and the conversion of outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..errors import GenlabError, check_positive_int
from ..schedulers import GuidanceSchedule

OUTPUT_TYPES = ("pil", "pt", "np")


@dataclass
class GenlabImageOutput(BaseOutput):
    """images: list of PIL images, a (B, C, H, W) tensor in [0, 1] ("pt") or a (B, H, W, C) array ("np")."""

    images: list[PIL.Image.Image] | torch.Tensor | np.ndarray


@dataclass
class GenlabVideoOutput(BaseOutput):
    """frames: one list of PIL frames per clip, a (B, T, C, H, W) tensor in [0, 1] ("pt") or a (B, T, H, W, C)
    array ("np"). Write a clip with `genlab.utils.save_video(frames[i], "clip.gif")`."""

    frames: list[list[PIL.Image.Image]] | torch.Tensor | np.ndarray


class GenlabPipeline(DiffusionPipeline):
    """Base class: validation helpers and output conversion. Subclasses implement __call__.

    User interfaces (the Gradio demo, the CLI) have no per-method code: what a pipeline accepts is read from the
    signature of its __call__, and its acceleration switch from the two class attributes below.
    """

    #: The method's acceleration switch: call argument -> allowed values, the first being the default "on" value
    #: (e.g. DDT: {"sharing": ["statdp", "uniform"], "sharing_ratio": [2, 3, 4, 5]}). Empty: no switch.
    acceleration_choices: dict = {}
    #: The call arguments that turn the trick off (the plain path it must equal), e.g. {"sharing": "none"}.
    acceleration_off: dict = {}
    #: One line naming the trick for a user interface, e.g. "encoder sharing".
    acceleration_label: str = ""

    @staticmethod
    def check_steps(num_inference_steps) -> int:
        return check_positive_int(num_inference_steps, "num_inference_steps")

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
    def guidance_schedule(guidance_scale, guidance_interval) -> GuidanceSchedule:
        """CFG scale everywhere, or only for lo < t < hi when an interval (lo, hi) is given (t = 0 noise)."""
        try:
            return GuidanceSchedule(float(guidance_scale), "interval" if guidance_interval else "constant",
                                    tuple(guidance_interval) if guidance_interval else (0.0, 1.0))
        except (TypeError, ValueError) as e:
            raise GenlabError(str(e)) from None

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
        shape = (len(labels), cfg.in_channels, cfg.sample_size, cfg.sample_size)
        x = self.prepare_latents(shape, generator, latents, device, self.transformer.dtype)
        return steps, labels, guidance, x

    @staticmethod
    def to_output(images: torch.Tensor, output_type: str):
        """images in [-1, 1] (B, C, H, W) -> the requested output type, values in [0, 1] / uint8 for PIL."""
        images = (images.float().clamp(-1, 1) + 1) / 2
        if output_type == "pt":
            return images.cpu()
        arr = images.permute(0, 2, 3, 1).cpu().numpy()
        if output_type == "np":
            return arr
        arr = (arr * 255).round().astype("uint8")
        if arr.shape[-1] == 1:
            return [PIL.Image.fromarray(a[..., 0], mode="L") for a in arr]
        return [PIL.Image.fromarray(a) for a in arr]
