"""The image <-> token interface every genlab method uses.

A tokenizer maps images (B, C, H, W) in [-1, 1] to tokens and back:
- continuous tokenizers (pixels, kl) give latents (B, c, h, w);
- discrete tokenizers (vq) give ids (B, h, w) long, and `embed(ids)` gives their (B, c, h, w) code vectors.
`latent_shape(image_size)` is (c, h, w) in both cases, so a model can size itself before seeing data.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..errors import GenlabError
from ..modeling import GenlabModel, PresetMixin


#: How far outside [-1, 1] an image may stray (resampling overshoot) before encode refuses it as mis-scaled.
RANGE_TOLERANCE = 0.05


class ImageTokenizer(PresetMixin, GenlabModel):
    """Base class: subclasses implement `encode`, `decode`, `training_loss` and the three properties.
    `from_preset(name, **overrides)` builds an untrained tokenizer from the class's PRESETS."""

    # name -> config overrides for `from_preset`; each subclass documents its own presets.
    PRESETS: ClassVar[dict[str, dict]] = {}

    # ---- what a subclass provides -------------------------------------------------------------
    is_discrete: bool = False

    @property
    def image_channels(self) -> int:
        return self.config.in_channels

    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    @property
    def downsample_factor(self) -> int:
        raise NotImplementedError

    def encode(self, images: torch.Tensor):
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Return dict(loss=scalar with grad, <part>=detached scalars for logging)."""
        raise NotImplementedError

    # ---- shared -------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """The training forward (genlab models train through forward()): the `training_loss` dict."""
        return self.training_loss(images, generator=generator)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """decode(encode(images)), deterministic (KL uses the posterior mean)."""
        return self.decode(self.encode(images))

    def latent_shape(self, image_size) -> tuple[int, int, int]:
        """(channels, h, w) of the latents (or of `embed(ids)` for discrete tokenizers) for an image size.

        `image_size` is an int (square) or (H, W); both sides must be multiples of `downsample_factor`.
        """
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        f = self.downsample_factor
        if h <= 0 or w <= 0 or h % f or w % f:
            raise GenlabError(f"{type(self).__name__}: image size {h}x{w} must be positive multiples of {f}")
        return (self.latent_channels, h // f, w // f)

    def check_images(self, images) -> torch.Tensor:
        """Raise a one-line GenlabError unless `images` is a float (B, C, H, W) tensor this tokenizer can encode."""
        name = type(self).__name__
        if not isinstance(images, torch.Tensor):
            raise GenlabError(f"{name}: images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim != 4:
            raise GenlabError(f"{name}: images must be (B, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[1] != self.image_channels:
            raise GenlabError(
                f"{name}: expected images with {self.image_channels} channel(s), got {images.shape[1]} "
                f"(shape {tuple(images.shape)})"
            )
        if not images.is_floating_point():
            raise GenlabError(f"{name}: images must be floating point in [-1, 1], got {images.dtype}")
        self.latent_shape(tuple(images.shape[-2:]))  # checks divisibility by the downsample factor
        if images.numel():
            if not bool(torch.isfinite(images).all()):
                raise GenlabError(f"{name}: images contain NaN or inf values")
            lo, hi = float(images.min()), float(images.max())
            if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                raise GenlabError(f"{name}: images must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}] (for "
                                  "0..255 pixels use x / 127.5 - 1)")
        return images.to(device=self.device, dtype=self.dtype)

    def check_latents(self, latents) -> torch.Tensor:
        """Raise a one-line GenlabError unless `latents` is a float (B, latent_channels, h, w) tensor."""
        name = type(self).__name__
        if (
            not isinstance(latents, torch.Tensor)
            or latents.ndim != 4
            or latents.shape[1] != self.latent_channels
        ):
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise GenlabError(f"{name}: expected latents (B, {self.latent_channels}, h, w), got {got}")
        return latents.to(device=self.device, dtype=self.dtype)
