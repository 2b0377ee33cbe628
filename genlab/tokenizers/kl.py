"""KLTokenizer: diffusers' AutoencoderKL in a tiny configuration, with a fitted latent scaling factor."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError, check_positive_int
from .base import ImageTokenizer


class KLTokenizer(ImageTokenizer):
    """Continuous latents z = scaling_factor * (posterior mean or sample) of a small AutoencoderKL.

    Downsample factor is 2 ** (len(block_out_channels) - 1). Presets (all untrained):
    - "tiny":    block_out_channels (32, 64), factor 2, 4 latent channels (~0.6M params; 16 px -> 4x8x8)
    - "tiny-f4": block_out_channels (32, 64, 64), factor 4, 4 latent channels (~0.9M params; 32 px -> 4x8x8)
    Call `fit_scaling_factor(images)` after training so the latents have unit standard deviation.
    """

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {
            "block_out_channels": (32, 64),
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
        },
        "tiny-f4": {
            "block_out_channels": (32, 64, 64),
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
        },
    }

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        block_out_channels: tuple = (32, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        mid_block_attention: bool = True,
        scaling_factor: float = 1.0,
        kl_weight: float = 1e-6,
    ):
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(latent_channels, "latent_channels")
        check_positive_int(layers_per_block, "layers_per_block")
        check_positive_int(norm_num_groups, "norm_num_groups")
        block_out_channels = tuple(int(c) for c in block_out_channels)
        if not block_out_channels or any(c <= 0 or c % norm_num_groups for c in block_out_channels):
            raise GenlabError(
                f"KLTokenizer: block_out_channels {block_out_channels} must be non-empty multiples of "
                f"norm_num_groups={norm_num_groups}"
            )
        if not scaling_factor > 0:
            raise GenlabError(f"KLTokenizer: scaling_factor must be positive, got {scaling_factor}")
        n = len(block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=in_channels,
            out_channels=in_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            mid_block_add_attention=mid_block_attention,
            scaling_factor=scaling_factor,  # kept equal to ours for code that reads vae.config directly
        )

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def posterior(self, images: torch.Tensor):
        """The encoder's DiagonalGaussianDistribution over unscaled latents."""
        return self.vae.encode(self.check_images(images)).latent_dist

    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        """Scaled latents: the posterior mean, or a posterior sample drawn with `generator` when sample=True."""
        dist = self.posterior(images)
        z = dist.sample(generator=generator) if sample else dist.mode()
        return z * self.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = self.check_latents(latents)
        return self.vae.decode(latents / self.config.scaling_factor).sample

    def training_loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """MSE reconstruction of a posterior sample + kl_weight * KL.

        There is no LPIPS or GAN term here (no pretrained nets at run time), so MSE alone drives the
        reconstructions. The KL is summed over latent elements and divided by the number of pixel values,
        the same ratio as SD's LDM loss (which sums both terms per sample), so kl_weight=1e-6 means what
        it means there: a light pull towards N(0, 1) that keeps latents bounded without blurring them.
        """
        images = self.check_images(images)
        dist = self.vae.encode(images).latent_dist
        recon = self.vae.decode(dist.sample(generator=generator)).sample
        rec = F.mse_loss(recon, images)
        kl = dist.kl().mean() / images[0].numel()
        loss = rec + self.config.kl_weight * kl
        return {"loss": loss, "recon": rec.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def fit_scaling_factor(self, images: torch.Tensor, batch_size: int = 256) -> float:
        """Set scaling_factor = 1 / std of the (unscaled) posterior-mean latents of `images`; saved in the config."""
        images = self.check_images(images)
        z = torch.cat([self.posterior(b).mode() for b in images.split(batch_size)])
        std = float(z.float().std())
        if not std > 0:
            raise GenlabError("KLTokenizer: latents have zero spread; cannot fit a scaling factor")
        self.register_to_config(scaling_factor=1.0 / std)
        self.vae.register_to_config(scaling_factor=1.0 / std)
        return 1.0 / std
