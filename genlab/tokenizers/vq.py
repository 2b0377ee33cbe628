"""VQTokenizer: a small conv autoencoder with a vector-quantised bottleneck (VQGAN without GAN/LPIPS).

`VectorQuantizer` is its own module so the multi-scale VQ of VAR can reuse it on residuals.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import GenlabError, check_positive_int
from .base import ImageTokenizer


def nearest_codes(zf: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors, (K, D) codes -> (N,) ids of the nearest code by squared L2."""
    dist = zf.pow(2).sum(1, keepdim=True) - 2 * zf @ codebook.t() + codebook.pow(2).sum(1)
    return dist.argmin(1)


def codebook_stats(ids: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of the codebook that occurs in ids, perplexity exp(H) of the id histogram) as tensors."""
    counts = torch.bincount(ids.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp(min=1)
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
    return (counts > 0).float().mean(), entropy.exp()


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with a straight-through gradient (van den Oord et al. 2017).

    With l2_normalize=True both inputs and codes live on the unit sphere, so the nearest code is the one of
    highest cosine similarity (improved VQGAN / LlamaGen): no code can drift far from the inputs and die,
    which keeps codebook usage high without EMA updates or restarts.
    """

    def __init__(
        self, codebook_size: int = 512, codebook_dim: int = 8, beta: float = 0.25, l2_normalize: bool = True
    ):
        super().__init__()
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.beta, self.l2_normalize = beta, l2_normalize
        self.embedding = nn.Embedding(codebook_size, codebook_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codebook(self) -> torch.Tensor:
        """(K, D) code vectors as used for lookup (unit length when l2_normalize)."""
        w = self.embedding.weight
        return F.normalize(w, dim=1) if self.l2_normalize else w

    def forward(self, z: torch.Tensor):
        """z (B, D, h, w) -> (z_q with straight-through gradient, ids (B, h, w), losses dict).

        losses: `codebook` = ||sg(z) - e||^2 (moves codes), `commit` = ||z - sg(e)||^2 (moves the encoder),
        `loss` = codebook + beta * commit.
        """
        b, d, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.l2_normalize:
            zf = F.normalize(zf, dim=1)
        cb = self.codebook()
        ids = nearest_codes(zf, cb)
        zq = cb[ids]
        codebook_loss = F.mse_loss(zq, zf.detach())
        commit_loss = F.mse_loss(zf, zq.detach())
        zq = zf + (zq - zf).detach()  # forward: the code; backward: identity to the encoder output
        zq = zq.reshape(b, h, w, d).permute(0, 3, 1, 2)
        losses = {
            "loss": codebook_loss + self.beta * commit_loss,
            "codebook": codebook_loss,
            "commit": commit_loss,
        }
        return zq, ids.reshape(b, h, w), losses

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> code vectors (B, D, h, w)."""
        return self.codebook()[ids].permute(0, 3, 1, 2)

    def usage(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(fraction of the codebook that occurs in ids, perplexity exp(H) of the id histogram) as tensors."""
        return codebook_stats(ids, self.codebook_size)



class IBQQuantizer(VectorQuantizer):
    """Index backpropagation quantisation (IBQ; Shi et al. 2024, the tokenizer ETT tunes end to end).

    The code of a vector z is the argmax of the dot products l_k = <z, e_k> (not the nearest code by L2: the two
    differ when code norms differ). Whenever gradients are on, z_q = sum_k onehot_st[k] e_k with
    onehot_st = hard - sg(softmax l) + softmax l: the forward value is exactly the chosen code, and a loss on z_q
    reaches the encoder *and every codebook row* through the softmax (the plain straight-through estimator of
    VectorQuantizer reaches the encoder only). Unlike the IBQ reference, the straight-through path does not depend
    on train/eval mode, so a tokenizer tuned in eval mode (ETT) still passes gradients.

    losses: `codebook` = mean(sg(z) - e)^2 (moves codes), `commit` = mean(sg(e) - z)^2 (moves the encoder),
    `ibq` = mean(z_q - z)^2 (both, through the soft one-hot), `entropy` = mean_pos H(p) - H(mean_pos p) with
    p = softmax(l / entropy_temperature) (MAGVIT-v2's term in IBQ's loss: sharp assignments, spread usage; without it
    the argmax of dot products lets one code of large norm win every position); `loss` = ibq + commit + beta *
    codebook + entropy_weight * entropy.
    """

    def __init__(self, codebook_size: int = 512, codebook_dim: int = 8, beta: float = 0.25,
                 l2_normalize: bool = False, entropy_weight: float = 0.05, entropy_temperature: float = 0.01):
        super().__init__(codebook_size, codebook_dim, beta, l2_normalize)
        if entropy_weight < 0 or entropy_temperature <= 0:
            raise GenlabError(f"IBQ: entropy_weight must be >= 0 and entropy_temperature > 0, got {entropy_weight} "
                              f"and {entropy_temperature}")
        self.entropy_weight, self.entropy_temperature = float(entropy_weight), float(entropy_temperature)

    def entropy_loss(self, logits: torch.Tensor) -> torch.Tensor:
        log_p = (logits.float() / self.entropy_temperature).log_softmax(1)
        p = log_p.exp()
        per_position = -(p * log_p).sum(1).mean()
        mean_p = p.mean(0)
        return per_position + (mean_p * torch.log(mean_p + 1e-10)).sum()

    def forward(self, z: torch.Tensor):
        b, d, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.l2_normalize:
            zf = F.normalize(zf, dim=1)
        cb = self.codebook()
        logits = zf @ cb.t()
        ids = logits.argmax(1)
        hard = cb[ids]
        if torch.is_grad_enabled():
            soft = logits.softmax(1)
            onehot = F.one_hot(ids, self.codebook_size).to(soft.dtype)
            zq = (onehot - soft.detach() + soft) @ cb
        else:
            zq = hard
        ibq_loss = F.mse_loss(zq, zf)
        commit_loss = F.mse_loss(zf, hard.detach())
        codebook_loss = F.mse_loss(hard, zf.detach())
        entropy = self.entropy_loss(logits) if self.entropy_weight else zf.new_zeros(())
        losses = {"loss": ibq_loss + commit_loss + self.beta * codebook_loss + self.entropy_weight * entropy,
                  "ibq": ibq_loss, "codebook": codebook_loss, "commit": commit_loss, "entropy": entropy}
        return zq.reshape(b, h, w, d).permute(0, 3, 1, 2), ids.reshape(b, h, w), losses


QUANTIZERS = {"vq": VectorQuantizer, "ibq": IBQQuantizer}

class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a (1x1 when the width changes) skip, as in the VQGAN/SD autoencoders."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class VQTokenizer(ImageTokenizer):
    """Discrete tokens: encode(images) -> (B, h, w) long ids in [0, codebook_size).

    quantizer_type: "vq" (nearest code by L2, plain straight-through estimator) or "ibq" (argmax of dot products, the
    soft one-hot straight-through that lets a downstream loss update every code; for ETT, with l2_normalize=False;
    entropy_weight / entropy_temperature: its codebook-usage term, IBQ's 0.05 and 0.01).
    Downsample factor is 2 ** (len(channel_multipliers) - 1). Presets (all untrained):
    - "tiny":    hidden 32, multipliers (1, 2), factor 2, 512 codes of dim 8 (~0.4M params; 16 px -> 8x8 ids)
    - "tiny-f4": hidden 32, multipliers (1, 2, 2), factor 4, 512 codes of dim 8 (~0.6M params; 32 px -> 8x8 ids)
    """

    is_discrete = True
    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {"hidden_channels": 32, "channel_multipliers": (1, 2), "num_res_blocks": 1},
        "tiny-f4": {"hidden_channels": 32, "channel_multipliers": (1, 2, 2), "num_res_blocks": 1},
    }

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        hidden_channels: int = 32,
        channel_multipliers: tuple = (1, 2),
        num_res_blocks: int = 1,
        norm_num_groups: int = 8,
        codebook_size: int = 512,
        codebook_dim: int = 8,
        beta: float = 0.25,
        l2_normalize: bool = True,
        quantizer_type: str = "vq",
        entropy_weight: float = 0.05,
        entropy_temperature: float = 0.01,
    ):
        super().__init__()
        if quantizer_type not in QUANTIZERS:
            raise GenlabError(f"VQTokenizer: unknown quantizer_type {quantizer_type!r}; choose one of "
                              f"{', '.join(QUANTIZERS)}")
        for value, name in [
            (in_channels, "in_channels"),
            (hidden_channels, "hidden_channels"),
            (num_res_blocks, "num_res_blocks"),
            (norm_num_groups, "norm_num_groups"),
            (codebook_size, "codebook_size"),
            (codebook_dim, "codebook_dim"),
        ]:
            check_positive_int(value, name)
        widths = [hidden_channels * int(m) for m in channel_multipliers]
        if not widths or any(c <= 0 or c % norm_num_groups for c in widths):
            raise GenlabError(
                f"VQTokenizer: hidden_channels * channel_multipliers {widths} must be non-empty multiples of "
                f"norm_num_groups={norm_num_groups}"
            )
        g = norm_num_groups

        enc = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        ch = widths[0]
        for i, width in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(ResBlock(ch, width, g))
                ch = width
            if i < len(widths) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [
            ResBlock(ch, ch, g),
            nn.GroupNorm(g, ch),
            nn.SiLU(),
            nn.Conv2d(ch, codebook_dim, 3, padding=1),
        ]
        self.encoder = nn.Sequential(*enc)

        entropy = dict(entropy_weight=entropy_weight, entropy_temperature=entropy_temperature)
        self.quantizer = QUANTIZERS[quantizer_type](codebook_size, codebook_dim, beta, l2_normalize,
                                                    **(entropy if quantizer_type == "ibq" else {}))

        dec = [nn.Conv2d(codebook_dim, ch, 3, padding=1), ResBlock(ch, ch, g)]
        for i in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                dec.append(ResBlock(ch, widths[i], g))
                ch = widths[i]
            if i > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        dec += [nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_channels(self) -> int:
        return self.config.codebook_dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.channel_multipliers) - 1)

    def quantize(self, z: torch.Tensor):
        """Encoder output z (B, codebook_dim, h, w) -> (z_q, ids, losses); see VectorQuantizer.forward."""
        return self.quantizer(self.check_latents(z))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> ids (B, H/f, W/f) long."""
        return self.quantizer(self.encoder(self.check_images(images)))[1]

    def check_ids(self, ids) -> torch.Tensor:
        """Validate ids (B, h, w), or (B, N) with N a perfect square as AR models produce; return (B, h, w)."""
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (
            torch.int64,
            torch.int32,
            torch.int16,
            torch.uint8,
        ):
            got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise GenlabError(f"VQTokenizer: ids must be an integer tensor (B, h, w), got {got}")
        if ids.ndim == 2:
            side = math.isqrt(ids.shape[1])
            if side * side != ids.shape[1]:
                raise GenlabError(f"VQTokenizer: (B, N) ids need a square N, got N={ids.shape[1]}")
            ids = ids.reshape(ids.shape[0], side, side)
        if ids.ndim != 3:
            raise GenlabError(f"VQTokenizer: ids must be (B, h, w) or (B, N), got shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise GenlabError(
                f"VQTokenizer: ids must lie in [0, {self.codebook_size}), got [{int(ids.min())}, {int(ids.max())}]"
            )
        return ids.long().to(self.device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) or (B, h*w) -> code vectors (B, codebook_dim, h, w)."""
        return self.quantizer.lookup(self.check_ids(ids))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) or (B, h*w) -> images (B, C, H, W)."""
        return self.decoder(self.embed(ids))

    def codebook_usage(self, ids: torch.Tensor) -> tuple[float, float]:
        """(fraction of the codebook used by ids, perplexity of their histogram: 1 = one code, K = uniform)."""
        usage, perplexity = self.quantizer.usage(self.check_ids(ids))
        return float(usage), float(perplexity)

    def training_loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """MSE reconstruction + codebook + beta * commitment loss (no LPIPS/GAN); `generator` is unused."""
        images = self.check_images(images)
        zq, ids, q = self.quantizer(self.encoder(images))
        rec = F.mse_loss(self.decoder(zq), images)
        usage, perplexity = self.quantizer.usage(ids)
        return {
            "loss": rec + q["loss"],
            "recon": rec.detach(),
            "codebook": q["codebook"].detach(),
            "commit": q["commit"].detach(),
            "usage": usage,
            "perplexity": perplexity,
        }
