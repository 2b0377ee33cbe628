"""Transformer building blocks: SwiGLU MLP, self-attention with QK-RMSNorm and RoPE, the adaLN block, the final layer.

The adaLN block is the "improved DiT" block of DDT: pre-norm RMSNorm, shift/scale/gate for the attention and MLP
branches from one Linear on an already-SiLU'd conditioning tensor. The conditioning may be per sample (B, 1, D)
or per token (B, N, D), so the same block serves DiT, DDT's encoder and decoder and diffusion heads.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import GenlabError

from .attention import attention
from .rope import apply_rope


def swiglu_hidden_size(hidden_size: int, mlp_ratio: float = 4.0) -> int:
    """SwiGLU keeps the parameter count of a GELU MLP of ratio r with a hidden width of floor(2 r D / 3)."""
    return int(2 * mlp_ratio * hidden_size / 3)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class SelfAttention(nn.Module):
    """qkv (without bias unless qkv_bias, as ViT), per-head RMSNorm on q and k before RoPE, output projection with
    bias unless proj_bias=False (TransformerBlock, as LlamaGen)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = True, proj_bias: bool = True, qkv_bias: bool = False):
        super().__init__()
        if dim % num_heads:
            raise GenlabError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache=None, positions: torch.Tensor | None = None):
        """x (B, N, D); rope (N, head_dim/2) for these N tokens; mask (N, N_k) boolean, True = may attend.
        With a KVCache, the new keys/values of sequence `positions` (N,) are appended to it and the queries attend
        to its filled entries (N_k = entries after this step, in writing order; the mask is laid out the same)."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if cache is not None:
            k, v = cache.update(k, v, positions)
        out = attention(q, k, v, mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block modulated by a conditioning tensor c of shape (B, 1, D), (B, D) or (B, N, D).

    `zero_init=True` zeroes the modulation Linear (DiT's adaLN-Zero: every block starts as the identity);
    DDT keeps PyTorch's default init here, so it is a switch.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True, zero_init: bool = True):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, qk_norm)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, swiglu_hidden_size(dim, mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.Linear(dim, 6 * dim))
        if zero_init:
            nn.init.zeros_(self.adaLN_modulation[0].weight)
            nn.init.zeros_(self.adaLN_modulation[0].bias)

    def forward(self, x, c, rope=None, mask=None):
        if c.dim() == 2:
            c = c[:, None]
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), rope, mask)
        x = x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x


class TransformerBlock(nn.Module):
    """Plain pre-norm (Llama / LlamaGen) block: x + attn(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)).

    Attention takes any boolean mask and optional RoPE; with `cache` (a KVCache) and `positions` it decodes
    incrementally. `dropout` is applied to both residual branches (LlamaGen's resid/FFN dropout). The SwiGLU width
    is floor(2 r D / 3) rounded up to a multiple of `ffn_multiple_of` (LlamaGen: 256). No biases.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = False,
                 norm_eps: float = 1e-5, dropout: float = 0.0, ffn_multiple_of: int = 1):
        super().__init__()
        self.attention_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.attn = SelfAttention(dim, num_heads, qk_norm, proj_bias=False)
        self.ffn_norm = nn.RMSNorm(dim, eps=norm_eps)
        hidden = swiglu_hidden_size(dim, mlp_ratio)
        self.mlp = SwiGLU(dim, -(-hidden // ffn_multiple_of) * ffn_multiple_of)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, rope=None, mask=None, cache=None, positions=None):
        x = x + self.dropout(self.attn(self.attention_norm(x), rope, mask, cache, positions))
        return x + self.dropout(self.mlp(self.ffn_norm(x)))


class ViTBlock(nn.Module):
    """Pre-LN ViT block (MAE / MAR): x + Attn(LN(x)), then x + MLP(LN(x)) with LayerNorm (affine), qkv bias and a
    GELU MLP. With `num_phases` > 0 it is Hi-MAR's scale-aware block: a stack-wide phase vector v (B or 1, 1, 4D)
    is mapped per block and phase τ to (scale_attn, gate_attn, scale_mlp, gate_mlp) = v a[τ] + b[τ], and
    x + gate_attn Attn(LN(x) (1 + scale_attn)), x + gate_mlp MLP(LN(x) (1 + scale_mlp)); a = 0 and b = (0, 1, 0, 1)
    at init, so the block starts as exactly the plain one (no shift term: Hi-MAR's code, not its paper's Eq. 2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, num_phases: int = 0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, qk_norm=False, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)
        self.num_phases = num_phases
        if num_phases:
            self.phase_scale = nn.Parameter(torch.zeros(num_phases, 1, 1, 4 * dim))
            self.phase_shift = nn.Parameter(torch.tensor([0.0, 1.0, 0.0, 1.0]).repeat_interleave(dim)
                                            .repeat(num_phases, 1, 1, 1).contiguous())

    def forward(self, x: torch.Tensor, phase_vector: torch.Tensor | None = None, phase: int = 0) -> torch.Tensor:
        if not self.num_phases:
            x = x + self.dropout(self.attn(self.norm1(x)))
            return x + self.dropout(self.mlp(self.norm2(x)))
        mod = phase_vector * self.phase_scale[phase] + self.phase_shift[phase]
        scale_attn, gate_attn, scale_mlp, gate_mlp = mod.chunk(4, dim=-1)
        x = x + gate_attn * self.dropout(self.attn(self.norm1(x) * (1 + scale_attn)))
        return x + gate_mlp * self.dropout(self.mlp(self.norm2(x) * (1 + scale_mlp)))


class FinalLayer(nn.Module):
    """LayerNorm without affine, adaLN shift/scale from c, Linear to the patch features; zero-init so the model
    outputs exactly 0 at initialisation."""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_features)
        for layer in (self.adaLN_modulation[0], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, c):
        if c.dim() == 2:
            c = c[:, None]
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
