"""Embedders shared by the diffusion and autoregressive models: timestep, class label (with a null row), patches."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10.0) -> torch.Tensor:
    """Sinusoidal features [cos, sin] of raw t (B,) -> (B, dim). max_period 10 suits t in [0, 1] (DDT's choice)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedder(nn.Module):
    """t in [0, 1] -> (B, hidden) through sinusoidal features and a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256, max_period: float = 10.0):
        super().__init__()
        self.frequency_dim, self.max_period = frequency_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        feats = timestep_features(t, self.frequency_dim, self.max_period).to(self.mlp[0].weight.dtype)
        return self.mlp(feats)


class LabelEmbedder(nn.Module):
    """Class label -> (B, hidden). Row `num_classes` is the "no class" embedding used for classifier-free guidance."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        nn.init.normal_(self.embedding_table.weight, std=0.02)

    @property
    def null_id(self) -> int:
        return self.num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)


def drop_labels(labels: torch.Tensor, prob: float, null_id: int, generator: torch.Generator | None = None):
    """Replace each label by `null_id` with probability `prob` (CFG training)."""
    if prob <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device if generator is None else "cpu")
    return torch.where(drop.to(labels.device) < prob, torch.full_like(labels, null_id), labels)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*p*p), patches row-major, features channel-major (torch unfold order)."""
    return F.unfold(x, kernel_size=patch_size, stride=patch_size).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, C*p*p) -> (B, C, H, W)."""
    return F.fold(tokens.transpose(1, 2), output_size=(height, width), kernel_size=patch_size, stride=patch_size)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens through one Linear (xavier weight, zero bias)."""

    def __init__(self, in_channels: int, patch_size: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size * patch_size, hidden_size)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(x, self.patch_size))
