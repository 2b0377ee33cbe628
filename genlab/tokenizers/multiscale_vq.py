"""MultiScaleVQTokenizer: VAR's multi-scale residual VQ-VAE (Tian et al. 2024, FoundationVision/VAR models/quant.py).

The encoder's latent f (B, C, s, s) is quantised coarse to fine: at scale k the residual still unexplained is
area-downsampled to p_k x p_k, each position takes its nearest code of ONE codebook shared by every scale, the
codes are bicubic-upsampled back to s x s, refined by a residual conv phi_k, and added to the running
reconstruction f_hat. Token maps of growing side p_1 < ... < p_K = s are what VAR / M-VAR predict, one scale per
step. The conv encoder / decoder are diffusers' own `Encoder` / `Decoder` (as in its VQModel).

Ids travel in two layouts: `idx_bl`, a list of K tensors (B, p_k^2) in raster order (VAR's idxBl), and the flat
(B, L) concatenation, L = sum p_k^2, that `encode` / `decode` use.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn

from ..errors import GenlabError, check_positive_int
from ..schedulers.orders import check_patch_nums
from .base import ImageTokenizer
from .vq import codebook_stats, nearest_codes


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) h + r conv3x3(h): the residual refinement of one scale's upsampled codes (VAR's Phi)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, 3, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class MultiScaleVQTokenizer(ImageTokenizer):
    """Discrete multi-scale tokens: encode(images) -> (B, L) ids, L = sum(p^2 for p in patch_nums).

    The latent side is patch_nums[-1]; the image side is that times the downsample factor
    2 ** (len(block_out_channels) - 1). `num_phi` residual convs are shared by the scales (VAR's "partially
    shared" phi: scale k of K uses the one whose tick in linspace(1/(3n), 1 - 1/(3n), n) is nearest k/(K-1)).
    Presets (untrained):
    - "tiny":    widths (32, 64), factor 2, 16-d latents, 512 codes, scales (1, 2, 3, 4, 6, 8): 16 px -> L = 130
    - "tiny-f4": widths (32, 64, 64), factor 4, otherwise as tiny: 32 px -> L = 130
    """

    is_discrete = True
    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"block_out_channels": (32, 64)},
        "tiny-f4": {"block_out_channels": (32, 64, 64)},
    }

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple = (32, 64),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        latent_channels: int = 16,
        codebook_size: int = 512,
        patch_nums: tuple = (1, 2, 3, 4, 6, 8),
        num_phi: int = 4,
        phi_ratio: float = 0.5,
        beta: float = 0.25,
        dead_code_threshold: float = 0.03,
    ):
        super().__init__()
        for value, name in [(in_channels, "in_channels"), (layers_per_block, "layers_per_block"),
                            (norm_num_groups, "norm_num_groups"), (latent_channels, "latent_channels"),
                            (codebook_size, "codebook_size"), (num_phi, "num_phi")]:
            check_positive_int(value, name)
        self.patch_nums = check_patch_nums(patch_nums)
        widths = [int(c) for c in block_out_channels]
        if not widths or any(c <= 0 or c % norm_num_groups for c in widths):
            raise GenlabError(f"MultiScaleVQTokenizer: block_out_channels {widths} must be non-empty multiples of "
                              f"norm_num_groups={norm_num_groups}")
        if not 0.0 <= phi_ratio <= 1.0:
            raise GenlabError(f"MultiScaleVQTokenizer: phi_ratio must lie in [0, 1], got {phi_ratio}")
        n = len(widths)
        self.encoder = Encoder(in_channels, latent_channels, ("DownEncoderBlock2D",) * n, tuple(widths),
                               layers_per_block, norm_num_groups, double_z=False, mid_block_add_attention=False)
        self.decoder = Decoder(latent_channels, in_channels, ("UpDecoderBlock2D",) * n, tuple(widths),
                               layers_per_block, norm_num_groups, mid_block_add_attention=False)
        self.quant_conv = nn.Conv2d(latent_channels, latent_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 3, padding=1)
        self.embedding = nn.Embedding(codebook_size, latent_channels)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.phis = nn.ModuleList(Phi(latent_channels, phi_ratio) for _ in range(num_phi))
        # How often each code was picked lately (EMA over training steps, 1 = a fair share); codes below the
        # threshold restart. Saved with the weights, so that a resumed training restarts the same codes.
        self.register_buffer("code_hits", torch.ones(codebook_size))

    # ---- sizes ----------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def latent_side(self) -> int:
        return self.patch_nums[-1]

    @property
    def image_size(self) -> int:
        return self.latent_side * self.downsample_factor

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def scale_slices(self) -> list[slice]:
        """Where each scale's ids sit in the flat (B, L) layout."""
        out, start = [], 0
        for p in self.patch_nums:
            out.append(slice(start, start + p * p))
            start += p * p
        return out

    def phi(self, k: int) -> Phi:
        """The residual conv of scale k (nearest tick)."""
        n, K = len(self.phis), len(self.patch_nums)
        at = k / (K - 1) if K > 1 else 0.0
        ticks = torch.linspace(1 / (3 * n), 1 - 1 / (3 * n), n) if n > 1 else torch.tensor([0.5])
        return self.phis[int((ticks - at).abs().argmin())]

    # ---- the quantiser ----------------------------------------------------------------------------
    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, p, p) -> ids (B, p*p) of the nearest codes by squared L2."""
        b, c = z.shape[:2]
        return nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, c), self.embedding.weight).view(b, -1)

    def _upsampled_codes(self, k: int, ids: torch.Tensor) -> torch.Tensor:
        """Scale k's ids (B, p^2) -> phi_k(bicubic-upsampled code vectors) (B, C, s, s); no resampling at the last."""
        p, s = self.patch_nums[k], self.latent_side
        h = self.embedding(ids).transpose(1, 2).reshape(ids.shape[0], -1, p, p)
        if k < len(self.patch_nums) - 1:
            h = F.interpolate(h, size=(s, s), mode="bicubic")
        return self.phi(k)(h)

    def _check_latent(self, f: torch.Tensor) -> None:
        if f.shape[-1] != self.latent_side or f.shape[-2] != self.latent_side:
            raise GenlabError(f"MultiScaleVQTokenizer: images of side {f.shape[-1] * self.downsample_factor} give "
                              f"{tuple(f.shape[-2:])} latents, but patch_nums ends at {self.latent_side}: encode "
                              f"{self.image_size} px images (or change patch_nums)")

    def latents(self, images: torch.Tensor) -> torch.Tensor:
        """images -> the continuous latent f (B, C, s, s) the scales quantise."""
        f = self.quant_conv(self.encoder(self.check_images(images)))
        self._check_latent(f)
        return f

    def quantize(self, f: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """f (B, C, s, s) -> (idx_bl: K ids (B, p_k^2), f_hats: the reconstruction after each scale)."""
        rest, f_hat = f, torch.zeros_like(f)
        idx_bl, f_hats = [], []
        K = len(self.patch_nums)
        for k, p in enumerate(self.patch_nums):
            z = F.interpolate(rest, size=(p, p), mode="area") if k < K - 1 else rest
            ids = self._nearest(z)
            h = self._upsampled_codes(k, ids)
            f_hat, rest = f_hat + h, rest - h
            idx_bl.append(ids)
            f_hats.append(f_hat)
        return idx_bl, f_hats

    # ---- VAR's interface ---------------------------------------------------------------------------
    def img_to_idx_bl(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, C, H, W) in [-1, 1] -> K ids (B, p_k^2)."""
        return self.quantize(self.latents(images))[0]

    def check_idx_bl(self, idx_bl) -> list[torch.Tensor]:
        if isinstance(idx_bl, torch.Tensor):
            idx_bl = self.split_ids(idx_bl)
        if not isinstance(idx_bl, (list, tuple)) or len(idx_bl) != len(self.patch_nums):
            raise GenlabError(f"MultiScaleVQTokenizer: expected {len(self.patch_nums)} scales of ids, got "
                              f"{len(idx_bl) if isinstance(idx_bl, (list, tuple)) else type(idx_bl).__name__}")
        out = []
        for k, (ids, p) in enumerate(zip(idx_bl, self.patch_nums)):
            if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.ndim != 2 or ids.shape[1] != p * p:
                got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
                raise GenlabError(f"MultiScaleVQTokenizer: scale {k} ids must be an integer (B, {p * p}) tensor, "
                                  f"got {got}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
                raise GenlabError(f"MultiScaleVQTokenizer: ids must lie in [0, {self.codebook_size}), got "
                                  f"[{int(ids.min())}, {int(ids.max())}] at scale {k}")
            out.append(ids.long().to(self.device))
        return out

    def split_ids(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """(B, L) -> K ids (B, p_k^2)."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[1] != self.num_tokens:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise GenlabError(f"MultiScaleVQTokenizer: ids must be (B, {self.num_tokens}) for patch_nums "
                              f"{list(self.patch_nums)}, got {got}")
        return [ids[:, sl] for sl in self.scale_slices()]

    def idx_bl_to_fhat(self, idx_bl) -> torch.Tensor:
        """K ids -> f_hat (B, C, s, s), the sum of every scale's refined codes."""
        idx_bl = self.check_idx_bl(idx_bl)
        return sum(self._upsampled_codes(k, ids) for k, ids in enumerate(idx_bl))

    def next_scale_input(self, k: int, f_hat: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One sampling step: add scale k's codes to f_hat; return (f_hat, the input tokens of scale k + 1:
        area-downsampled f_hat (B, p_{k+1}^2, C)); after the last scale the second item is f_hat itself."""
        f_hat = f_hat + self._upsampled_codes(k, ids)
        if k == len(self.patch_nums) - 1:
            return f_hat, f_hat
        p = self.patch_nums[k + 1]
        return f_hat, F.interpolate(f_hat, size=(p, p), mode="area").flatten(2).transpose(1, 2)

    def idx_bl_to_var_input(self, idx_bl) -> torch.Tensor:
        """Teacher-forcing inputs (B, L - p_1^2, C): for k = 1..K-1, scale k's tokens are the area-downsampled f_hat
        after scales < k (built from the ground-truth ids, not from the continuous f). Scale 0 has none (SOS)."""
        idx_bl = self.check_idx_bl(idx_bl)
        b = idx_bl[0].shape[0]
        f_hat = torch.zeros(b, self.latent_channels, self.latent_side, self.latent_side, device=self.device,
                            dtype=self.embedding.weight.dtype)
        inputs = []
        for k in range(len(self.patch_nums) - 1):
            f_hat, nxt = self.next_scale_input(k, f_hat, idx_bl[k])
            inputs.append(nxt)
        if not inputs:
            return f_hat.new_zeros(b, 0, self.latent_channels)
        return torch.cat(inputs, 1)

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def idx_bl_to_img(self, idx_bl) -> torch.Tensor:
        return self.fhat_to_img(self.idx_bl_to_fhat(idx_bl))

    def idx_bl_to_partial_imgs(self, idx_bl) -> list[torch.Tensor]:
        """K ids -> K images (B, C, H, W): the decode of f_hat after scales 0..k, coarse to fine (VAR's
        idxBl_to_img with same_shape and every scale), to show what each scale adds."""
        idx_bl = self.check_idx_bl(idx_bl)
        f_hat, images = 0, []
        for k, ids in enumerate(idx_bl):
            f_hat = f_hat + self._upsampled_codes(k, ids)
            images.append(self.fhat_to_img(f_hat))
        return images

    # ---- the tokenizer interface ----------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> ids (B, L), the scales concatenated coarse to fine."""
        return torch.cat(self.img_to_idx_bl(images), 1)

    def decode(self, ids) -> torch.Tensor:
        """ids (B, L) or K ids (B, p_k^2) -> images (B, C, H, W) in [-1, 1]."""
        return self.idx_bl_to_img(ids)

    def latent_shape(self, image_size) -> tuple[int, int, int]:
        c, h, w = super().latent_shape(image_size)
        if h != self.latent_side or w != self.latent_side:
            raise GenlabError(f"MultiScaleVQTokenizer: patch_nums {list(self.patch_nums)} end at "
                              f"{self.latent_side}, so images must be {self.image_size} px, got {image_size}")
        return c, h, w

    def codebook_usage(self, ids) -> tuple[float, float]:
        """(fraction of the codebook used by ids, perplexity of their histogram)."""
        usage, perplexity = codebook_stats(torch.cat(self.check_idx_bl(ids), 1), self.codebook_size)
        return float(usage), float(perplexity)

    def training_loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """MSE reconstruction + VAR's VQ loss, the mean over scales of beta ||sg(f_hat_k) - f||^2 +
        ||f_hat_k - sg(f)||^2 (f_hat_k: the reconstruction after scale k), decoded through a straight-through
        f_hat. Codes picked less than `dead_code_threshold` of their fair share lately restart at a random
        residual of this batch (drawn with `generator`), which keeps a plain-L2 codebook from collapsing."""
        f = self.latents(images)
        target = f.detach()
        idx_bl, f_hats = self.quantize(target)
        vq = sum(self.config.beta * F.mse_loss(fh.detach(), f) + F.mse_loss(fh, target) for fh in f_hats)
        vq = vq / len(f_hats)
        f_hat = f + (f_hats[-1] - f).detach()  # forward: the quantised latent; backward: identity to the encoder
        rec = F.mse_loss(self.decoder(self.post_quant_conv(f_hat)), images)
        ids = torch.cat(idx_bl, 1)
        usage, perplexity = codebook_stats(ids, self.codebook_size)
        if self.training:
            self._restart_dead_codes(ids, target, generator)
        return {"loss": rec + vq, "recon": rec.detach(), "vq": vq.detach(),
                "usage": usage, "perplexity": perplexity}

    @torch.no_grad()
    def _restart_dead_codes(self, ids: torch.Tensor, f: torch.Tensor, generator) -> None:
        counts = torch.bincount(ids.flatten(), minlength=self.codebook_size).float()
        share = counts * self.codebook_size / counts.sum()  # 1 = a fair share
        self.code_hits.mul_(0.95).add_(share, alpha=0.05)
        dead = (self.code_hits < self.config.dead_code_threshold).nonzero().flatten()
        if not len(dead):
            return
        # candidates: the latent vectors at the finest scale, where most codes are spent
        pool = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
        pick = torch.randint(len(pool), (len(dead),), generator=generator, device="cpu").to(pool.device)
        self.embedding.weight[dead] = pool[pick].to(self.embedding.weight.dtype)
        self.code_hits[dead] = 1.0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.embedding.weight.data, 0)  # every process keeps one codebook
