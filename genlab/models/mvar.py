"""MVARModel: VAR with the two jobs of its attention decoupled (Ren et al. 2024; OliverRensu/MVAR models/mvar.py,
models/basic_mvar.py).

Inside every block, self-attention is restricted to a token's own scale (block-diagonal mask: intra-scale
modelling), and a causal Mamba-2 over the whole flattened sequence carries the coarser scales' information
(inter-scale modelling) in linear time. adaLN has 9 chunks (gamma1..3, scale1..3, shift1..3) for the attention,
Mamba and FFN branches. Everything else (tokenizer, embeddings, loss, sampler, CFG) is VAR's, from models/var.py.

Sampling feeds one scale per pass: attention runs over that scale's tokens only (no KV cache needed), and each
block's Mamba continues from the state it carried out of the previous scale (genlab's recurrent cache; the
official code re-runs Mamba over the whole prefix every step, which `recompute_prefix=True` reproduces for tests).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config

from ..layers.selective_scan import Mamba2
from ..schedulers.orders import same_level_mask
from .var import FFN, VARAttention, VARModel, scale_of_positions


def block_diagonal_mask(patch_nums) -> torch.Tensor:
    """(L, L) M-VAR's mask: position i may attend j iff scale(j) == scale(i)."""
    return same_level_mask(scale_of_positions(patch_nums))


class MVARBlock(nn.Module):
    """Intra-scale attention, inter-scale Mamba-2, FFN; adaLN chunks in the official order (gammas, scales, shifts)."""

    num_chunks = 9

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, l2_norm: bool, d_state: int, headdim: int,
                 chunk_size: int):
        super().__init__()
        self.ln_wo_grad = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = VARAttention(dim, num_heads, l2_norm)
        self.mamba = Mamba2(dim, d_state=d_state, headdim=headdim, chunk_size=chunk_size)
        self.ffn = FFN(dim, mlp_ratio)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, self.num_chunks * dim))

    def chunks(self, cond):
        return self.ada_lin(cond).view(-1, 1, self.num_chunks, cond.shape[-1]).unbind(2)

    def forward(self, x, cond, mask=None, cache=None, positions=None, state=None):
        """`state`: the Mamba state carried in from the previous positions (None: the sequence starts here).
        Returns (x, the Mamba state after the last position)."""
        gamma1, gamma2, gamma3, scale1, scale2, scale3, shift1, shift2, shift3 = self.chunks(cond)
        x = x + self.attn(self.ln_wo_grad(x) * (1 + scale1) + shift1, mask) * gamma1
        out, state = self.mamba(self.ln_wo_grad(x) * (1 + scale2) + shift2, state)
        x = x + out * gamma2
        return x + self.ffn(self.ln_wo_grad(x) * (1 + scale3) + shift3) * gamma3, state

    def forward_recompute(self, x, cond, prefix: list):
        """The official sampler's step: append the residual stream after attention to `prefix` (every scale so
        far), run Mamba over all of it from the start and keep the outputs of the new positions."""
        gamma1, gamma2, gamma3, scale1, scale2, scale3, shift1, shift2, shift3 = self.chunks(cond)
        x = x + self.attn(self.ln_wo_grad(x) * (1 + scale1) + shift1) * gamma1
        prefix.append(x)
        out, _ = self.mamba(self.ln_wo_grad(torch.cat(prefix, 1)) * (1 + scale2) + shift2)
        x = x + out[:, -x.shape[1]:] * gamma2
        return x + self.ffn(self.ln_wo_grad(x) * (1 + scale3) + shift3) * gamma3, prefix


class MVARModel(VARModel):
    """VARModel with MVARBlocks: block-diagonal attention plus a Mamba-2 (d_state, headdim, chunk_size) per block.
    At equal depth and width it has about 1.5x VAR's parameters (27 C^2 per block instead of 18 C^2): compare the
    two at equal parameters (a shallower or narrower M-VAR), as the paper's headline does.

    Init is VAR's (models/var.py), Mamba's Linear and conv included; A_log, dt_bias and D keep Mamba's own. As
    in the official code, only adaLN rows [0:2C] get init_adaln_gamma, so the FFN gate gamma3 gets init_adaln (the
    6 -> 9 chunk change was not carried into init_weights): kept for parity."""
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("MVARBlock",)

    @register_to_config
    def __init__(self, patch_nums: list | tuple = (1, 2, 3, 4, 6, 8), vocab_size: int = 512,
                 latent_channels: int = 16, hidden_size: int = 192, depth: int = 6, num_heads: int = 3,
                 mlp_ratio: float = 4.0, num_classes: int = 10, class_names: list | None = None,
                 attn_l2_norm: bool = True, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-3,
                 init_head: float = 0.02, d_state: int = 64, mamba_headdim: int = 64, mamba_chunk_size: int = 64,
                 recompute_prefix: bool = False):
        super().__init__(patch_nums, vocab_size, latent_channels, hidden_size, depth, num_heads, mlp_ratio,
                         num_classes, class_names, attn_l2_norm, init_adaln, init_adaln_gamma, init_head)

    def make_block(self, index: int) -> nn.Module:
        c = self.config
        return MVARBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.attn_l2_norm, c.d_state, c.mamba_headdim,
                         c.mamba_chunk_size)

    def training_mask(self) -> torch.Tensor:
        return self._cached("mask", lambda: block_diagonal_mask(self.patch_nums))

    def step_cache(self, batch_size: int, block: nn.Module):
        """M-VAR's decoding memory per block: the Mamba state (None before the first scale), or with
        recompute_prefix the block's residual stream of every scale so far."""
        return [] if self.config.recompute_prefix else None

    def decode_block(self, block, x, cond, cache, positions):
        if self.config.recompute_prefix:
            return block.forward_recompute(x, cond, cache)
        return block(x, cond, None, None, None, cache)
