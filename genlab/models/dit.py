"""DiT with flow matching: the class-conditional diffusion transformer genlab's other methods are compared with.

One stack of adaLN blocks (RMSNorm, QK-RMSNorm, SwiGLU, 2-D RoPE on normalised coordinates) conditioned per sample
on c = SiLU(t_emb + y_emb). This is DDT's "improved DiT" block without the encoder/decoder split, so a DiT and a DDT
of the same width and depth differ only in the split. t in [0, 1] with t = 0 noise; the model predicts velocity.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError
from ..layers import AdaLNBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, rope_frequencies, unpatchify
from ..modeling import GenlabModel

DIT_PRESETS = {
    # name: (hidden_size, depth, num_heads)
    "test": dict(hidden_size=64, depth=2, num_heads=4),
    "tiny": dict(hidden_size=192, depth=6, num_heads=6),
    "small": dict(hidden_size=256, depth=12, num_heads=8),
    "B": dict(hidden_size=768, depth=12, num_heads=12),
    "L": dict(hidden_size=1024, depth=24, num_heads=16),
    "XL": dict(hidden_size=1152, depth=28, num_heads=16),
}


class DiTModel(GenlabModel):
    @register_to_config
    def __init__(self, sample_size: int = 32, in_channels: int = 1, patch_size: int = 4, hidden_size: int = 192,
                 depth: int = 6, num_heads: int = 6, mlp_ratio: float = 4.0, num_classes: int = 10,
                 class_names: list | None = None, rope_span: float | None = 16.0, rope_theta: float = 10000.0,
                 time_max_period: float = 10.0, zero_init_adaln: bool = True):
        super().__init__()
        if sample_size % patch_size:
            raise GenlabError(f"sample_size {sample_size} is not divisible by patch_size {patch_size}")
        if hidden_size % num_heads or (hidden_size // num_heads) % 4:
            raise GenlabError(f"head dim hidden_size/num_heads = {hidden_size}/{num_heads} must be an integer divisible by 4 (2-D RoPE)")
        if class_names is not None and len(class_names) != num_classes:
            raise GenlabError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
        self.x_embedder = PatchEmbed(in_channels, patch_size, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size, max_period=time_max_period)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.blocks = nn.ModuleList(
            AdaLNBlock(hidden_size, num_heads, mlp_ratio, zero_init=zero_init_adaln) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * in_channels)
        self._rope_cache: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "DiTModel":
        if name not in DIT_PRESETS:
            raise GenlabError(f"unknown DiT preset {name!r}; choose from {sorted(DIT_PRESETS)}")
        return cls(**{**DIT_PRESETS[name], **overrides})

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def rope(self, grid_h: int, grid_w: int) -> torch.Tensor:
        # Cached per grid size, not a buffer: it is derived from the config and must not enter the state dict.
        key = (grid_h, grid_w)
        if key not in self._rope_cache:
            head_dim = self.config.hidden_size // self.config.num_heads
            self._rope_cache[key] = rope_frequencies((grid_h, grid_w), head_dim, self.config.rope_theta, self.config.rope_span)
        return self._rope_cache[key]

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor):
        c, p = self.config.in_channels, self.config.patch_size
        if x.dim() != 4 or x.shape[1] != c or x.shape[2] % p or x.shape[3] % p:
            raise GenlabError(f"DiTModel expects x of shape (B, {c}, H, W) with H, W divisible by {p}; got {tuple(x.shape)}")
        if t.shape != (x.shape[0],) or class_labels.shape != (x.shape[0],):
            raise GenlabError(f"t and class_labels must have shape ({x.shape[0]},); got {tuple(t.shape)} and {tuple(class_labels.shape)}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) noisy input x_t, t: (B,) in [0, 1], class_labels: (B,) long (num_classes = no class).
        Returns the velocity, shape of x."""
        self.check_inputs(x, t, class_labels)
        B, _, H, W = x.shape
        p = self.config.patch_size
        tokens = self.x_embedder(x)
        c = F.silu(self.t_embedder(t) + self.y_embedder(class_labels))[:, None]
        rope = self.rope(H // p, W // p)
        for block in self.blocks:
            tokens = block(tokens, c, rope)
        return unpatchify(self.final_layer(tokens, c), p, H, W)
