"""Raster-order next-token AR (LlamaGen c2i): the baseline NAR is compared with.

A decoder-only Llama transformer (pre-norm RMSNorm, SwiGLU, no-bias attention, 2-D RoPE on integer grid positions
with an all-zero RoPE row for the class token, N(0, 0.02) init, zero-initialised output) over
[class token | VQ ids in raster order]. Token n is predicted from the hidden state of the previous sequence position
(the class token for n = 0). Sampling takes one forward pass per token with a KV cache (`generate_tokens`).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config

from ..modeling import GenlabModel
from ..schedulers.orders import raster_levels, raster_mask
from .token_transformer import TOKEN_TRANSFORMER_PRESETS, TokenTransformerMixin, check_token_transformer_config


class ARModel(TokenTransformerMixin, GenlabModel):
    PRESETS, PRESET_FAMILY = TOKEN_TRANSFORMER_PRESETS, "AR"

    @register_to_config
    def __init__(self, grid_size: list | tuple = (8, 8), vocab_size: int = 512, hidden_size: int = 192,
                 depth: int = 6, num_heads: int = 6, mlp_ratio: float = 4.0, num_classes: int = 10,
                 class_names: list | None = None, pos_embed: str = "rope", cond_rope: str = "zero",
                 rope_theta: float = 10000.0, dropout: float = 0.0, ffn_multiple_of: int = 1):
        super().__init__()
        grid = check_token_transformer_config(grid_size, vocab_size, hidden_size, num_heads, num_classes,
                                              class_names, pos_embed)
        self.build_token_transformer(grid)
        self.init_token_transformer_weights(zero_heads=[self.output])

    def head_modules(self):
        return [([], (self.norm, self.output))]

    def decoding_levels(self) -> list[torch.Tensor]:
        return raster_levels(self.grid)

    def decoding_mask(self) -> torch.Tensor:
        return raster_mask(self.grid, num_cond=1)

    def decoding_routes(self):
        """Token n is read at sequence position n: the class token for n = 0, token n - 1 otherwise."""
        n = self.num_tokens
        return torch.arange(n)[:, None], torch.ones(n, 1, dtype=torch.bool)
