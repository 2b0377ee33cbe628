"""One attention function for every genlab transformer.

torch's scaled_dot_product_attention is the default everywhere (CPU included). When xformers is installed and
the tensors live on CUDA, its memory-efficient kernel is used instead; set GENLAB_ATTENTION=sdpa to force torch.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

try:  # xformers is a CUDA-only optional extra ([gpu]); the pure-torch path is the tested default.
    import xformers.ops as xops
except Exception:  # ImportError, or a broken CUDA build on a CPU machine
    xops = None


def xformers_available() -> bool:
    return xops is not None


def attention_backend(q: torch.Tensor, mask: torch.Tensor | None = None) -> str:
    """Name of the kernel `attention` would use for these inputs: "xformers" or "sdpa"."""
    forced = os.environ.get("GENLAB_ATTENTION", "").lower()
    if forced == "sdpa" or xops is None or not q.is_cuda:
        return "sdpa"
    return "xformers"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention on (B, heads, N, d) tensors; `mask` is a boolean (N_q, N_k) or (B, 1, N_q, N_k)
    tensor where True means "may attend". Returns (B, heads, N_q, d)."""
    if attention_backend(q, mask) == "xformers":
        bias = None
        if mask is not None:
            # xformers takes an additive bias laid out (B, heads, N_q, N_k).
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
            bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias)
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
