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
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from ..layers import AdaLNBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, unpatchify
from ..modeling import GenlabModel
from .patch_transformer import PatchTransformerMixin, check_patch_transformer_config

DIT_PRESETS = {
    # name: (hidden_size, depth, num_heads)
    "test": dict(hidden_size=64, depth=2, num_heads=4),
    "tiny": dict(hidden_size=192, depth=6, num_heads=6),
    "small": dict(hidden_size=256, depth=12, num_heads=8),
    "B": dict(hidden_size=768, depth=12, num_heads=12),
    "L": dict(hidden_size=1024, depth=24, num_heads=16),
    "XL": dict(hidden_size=1152, depth=28, num_heads=16),
}


class DiTModel(PatchTransformerMixin, GenlabModel):
    PRESETS, PRESET_FAMILY = DIT_PRESETS, "DiT"

    @register_to_config
    def __init__(self, sample_size: int = 32, in_channels: int = 1, patch_size: int = 4, hidden_size: int = 192,
                 depth: int = 6, num_heads: int = 6, mlp_ratio: float = 4.0, num_classes: int = 10,
                 class_names: list | None = None, rope_span: float | None = 16.0, rope_theta: float = 10000.0,
                 time_max_period: float = 10.0, zero_init_adaln: bool = True):
        super().__init__()
        check_patch_transformer_config(sample_size, patch_size, hidden_size, num_heads, num_classes, class_names)
        self.x_embedder = PatchEmbed(in_channels, patch_size, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size, max_period=time_max_period)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.blocks = nn.ModuleList(
            AdaLNBlock(hidden_size, num_heads, mlp_ratio, zero_init=zero_init_adaln) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * in_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor, return_dict: bool = True):
        """x: (B, C, H, W) noisy input x_t, t: (B,) in [0, 1], class_labels: (B,) long (num_classes = no class).
        Returns Transformer2DModelOutput(sample=velocity shaped like x), or (velocity,) with return_dict=False."""
        self.check_inputs(x, t, class_labels)
        B, _, H, W = x.shape
        p = self.config.patch_size
        tokens = self.x_embedder(x)
        c = F.silu(self.t_embedder(t) + self.y_embedder(class_labels))[:, None]
        rope = self.rope(H // p, W // p)
        for block in self.blocks:
            tokens = block(tokens, c, rope)
        v = unpatchify(self.final_layer(tokens, c), p, H, W)
        return Transformer2DModelOutput(sample=v) if return_dict else (v,)
