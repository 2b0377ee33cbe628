"""NAR: Neighboring Autoregressive Modeling (He et al., 2025): next-*neighbour* prediction in rings of equal
Manhattan distance from the top-left token, one forward pass per ring (2n - 1 for an n x n grid, T + H + W - 2 for
a T x H x W video).

The backbone is ARModel's LlamaGen transformer with NAR's proximity mask (token p sees q iff d(q) <= d(p), d the
Manhattan distance: causal across rings, bidirectional inside a ring; every token sees the class token).
One *dimension-oriented head* per grid axis:
- head 0, horizontal (next column): trunk -> `norm` -> `output` (same names as ARModel, zero-initialised);
- head 1, vertical (next row): one extra TransformerBlock on the trunk output -> its norm -> its Linear;
- head 2, temporal (next frame, videos only): a second extra block stacked after the vertical one.
The logit of token x is the mean over the axes a with x_a > 0 of head_a(h(x - e_a)) (mixed logits, in logit space);
token (0, 0[, 0]) averages every head at the class-token position. Training: one cross-entropy on the mixed logits
against the unshifted tokens. State-dict names: `layers.*`, `norm`, `output` (official `medusa_*` map to
`extra_blocks.0`, `extra_norms.0`, `extra_outputs.0`).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError
from ..modeling import GenlabModel
from ..schedulers.orders import grid_coordinates, manhattan_distance, proximity_mask, ring_levels
from .token_transformer import TOKEN_TRANSFORMER_PRESETS, TokenTransformerMixin, check_token_transformer_config

HEAD_NAMES = ("horizontal", "vertical", "temporal")


class NARModel(TokenTransformerMixin, GenlabModel):
    PRESETS, PRESET_FAMILY = TOKEN_TRANSFORMER_PRESETS, "NAR"

    @register_to_config
    def __init__(self, grid_size: list | tuple = (8, 8), vocab_size: int = 512, hidden_size: int = 192,
                 depth: int = 6, num_heads: int = 6, mlp_ratio: float = 4.0, num_classes: int = 10,
                 class_names: list | None = None, pos_embed: str = "rope", cond_rope: str = "zero",
                 rope_theta: float = 10000.0, dropout: float = 0.0, ffn_multiple_of: int = 1,
                 zero_init_heads: str = "horizontal"):
        super().__init__()
        grid = check_token_transformer_config(grid_size, vocab_size, hidden_size, num_heads, num_classes,
                                              class_names, pos_embed)
        if len(grid) not in (2, 3):
            raise GenlabError(f"NAR needs a 2-D (H, W) or 3-D (T, H, W) grid, got {grid}")
        if zero_init_heads not in ("horizontal", "all"):
            raise GenlabError(f"zero_init_heads must be 'horizontal' (image code) or 'all' (video code), "
                              f"got {zero_init_heads!r}")
        self.build_token_transformer(grid)
        extra = len(grid) - 1  # vertical, then temporal
        self.extra_blocks = nn.ModuleList(self.block() for _ in range(extra))
        self.extra_norms = nn.ModuleList(nn.RMSNorm(hidden_size, eps=1e-5) for _ in range(extra))
        self.extra_outputs = nn.ModuleList(nn.Linear(hidden_size, vocab_size, bias=False) for _ in range(extra))
        zero = [self.output] + (list(self.extra_outputs) if zero_init_heads == "all" else [])
        self.init_token_transformer_weights(zero_heads=zero)

    @property
    def head_names(self) -> tuple[str, ...]:
        return HEAD_NAMES[: len(self.grid)]

    def head_modules(self):
        heads = [([], (self.norm, self.output))]
        for block, norm, out in zip(self.extra_blocks, self.extra_norms, self.extra_outputs):
            heads.append(([block], (norm, out)))
        return heads

    def decoding_levels(self) -> list[torch.Tensor]:
        return ring_levels(self.grid)

    def decoding_mask(self) -> torch.Tensor:
        return proximity_mask(self.grid, num_cond=1)

    def decoding_routes(self):
        return neighbour_routes(self.grid)


def neighbour_routes(grid: tuple[int, ...]):
    """(src (N, A), valid (N, A)): head a (grid axis ndim-1-a) predicts cell x from sequence position
    1 + raster(x - e_axis), valid when x_axis > 0; the first cell is predicted by every head from the class token
    (position 0). Routing by coordinates works for any (non-square) grid."""
    coords = grid_coordinates(grid)
    n, ndim = coords.shape
    strides = torch.tensor([math.prod(grid[i + 1:]) for i in range(ndim)])
    raster = torch.arange(n)
    src = torch.zeros(n, ndim, dtype=torch.long)
    valid = torch.zeros(n, ndim, dtype=torch.bool)
    for a in range(ndim):
        axis = ndim - 1 - a
        has = coords[:, axis] > 0
        src[:, a] = torch.where(has, 1 + raster - strides[axis], 0)
        valid[:, a] = has
    first = manhattan_distance(grid) == 0
    valid[first] = True
    return src, valid


def official_rope_permutation(head_dim: int) -> torch.Tensor:
    """Channel order that turns LlamaGen/NAR 2-D RoPE (first half of the rotary pairs: row, second half: column,
    frequency index ascending in each half) into genlab's interleaved layout (pair 2k: column, 2k+1: row, frequency
    k): genlab channel c holds official channel perm[c]. Applied to q and k alike, it leaves q.k unchanged."""
    quarter = head_dim // 4
    pairs = []
    for k in range(quarter):
        pairs += [quarter + k, k]  # genlab pair 2k <- official column pair k; 2k+1 <- official row pair k
    return torch.tensor([2 * p + e for p in pairs for e in (0, 1)])


def convert_official_state_dict(state_dict: dict, depth: int, num_heads: int) -> dict:
    """State dict of the official NAR image model (`NAR-images/autoregressive/models/gpt.py`, `Transformer`,
    c2i, cls_token_num=1, n_kv_head = n_head) -> NARModel names; load it into a NARModel built with
    grid_size=(n, n), ffn_multiple_of=256 (the official default), cond_rope="zero" and the same sizes.
    `layers.{depth}` (the "medusa" block) becomes `extra_blocks.0`, `medusa_norm/output` `extra_norms/outputs.0`,
    and the q/k rows of `wqkv` are permuted to genlab's RoPE layout."""
    out = {}
    names = {"attention.wqkv": "attn.qkv", "attention.wo": "attn.proj", "feed_forward.w1": "mlp.w1",
             "feed_forward.w2": "mlp.w2", "feed_forward.w3": "mlp.w3", "attention_norm": "attention_norm",
             "ffn_norm": "ffn_norm"}
    for key, value in state_dict.items():
        if "kv_cache" in key or key.startswith("freqs_cis"):
            continue
        if key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            module, param = rest.rsplit(".", 1)
            prefix = f"layers.{index}" if int(index) < depth else f"extra_blocks.{int(index) - depth}"
            if module not in names:
                raise GenlabError(f"unexpected key in official NAR state dict: {key}")
            if module == "attention.wqkv":
                dim = value.shape[1]
                head_dim = dim // num_heads
                perm = official_rope_permutation(head_dim)
                q, k, v = value.split(dim, dim=0)
                q, k = (t.view(num_heads, head_dim, dim)[:, perm].reshape(dim, dim) for t in (q, k))
                value = torch.cat([q, k, v])
            out[f"{prefix}.{names[module]}.{param}"] = value
        elif key.startswith("medusa_norm."):
            out["extra_norms.0." + key.split(".", 1)[1]] = value
        elif key.startswith("medusa_output."):
            out["extra_outputs.0." + key.split(".", 1)[1]] = value
        else:
            out[key] = value
    return out
