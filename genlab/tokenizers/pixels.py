"""PixelTokenizer: the identity tokenizer (pixel-space DDT, pixel UNet), with an optional affine rescale."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError, check_positive_int
from .base import ImageTokenizer


class PixelTokenizer(ImageTokenizer):
    """tokens = (images - shift) * scale; images = tokens / scale + shift. No weights, nothing to train.

    With the defaults (scale=1, shift=0) tokens are the images themselves, in [-1, 1].
    """

    PRESETS: ClassVar[dict[str, dict]] = {"identity": {}}

    @register_to_config
    def __init__(self, in_channels: int = 3, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        if not scale or not math.isfinite(scale):
            raise GenlabError(f"PixelTokenizer: scale must be a non-zero number, got {scale}")
        # A module without tensors saves no weights file, and GenlabModel.from_pretrained (like any genlab
        # component) requires one. A persistent buffer holding (scale, shift) gives the folder its weights file
        # and also lets `.device`/`.dtype`/`.to()` work like for every other tokenizer.
        self.register_buffer("scale_shift", torch.tensor([float(scale), float(shift)]))

    @property
    def latent_channels(self) -> int:
        return self.config.in_channels

    @property
    def downsample_factor(self) -> int:
        return 1

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = self.check_images(images)
        return (images - self.scale_shift[1]) * self.scale_shift[0]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.check_latents(tokens)
        return tokens / self.scale_shift[0] + self.scale_shift[1]

    def training_loss(self, images, generator=None):
        # An optimiser over zero parameters or a loss without grad would fail deep inside torch; say so here.
        raise GenlabError("PixelTokenizer has nothing to train (it is the identity map)")
