"""A key/value cache with scattered position writes, for autoregressive decoding of any order.

The cache holds (B, heads, max_len, head_dim) keys and values. `update(k, v, positions)` writes the new entries at
sequence positions `positions` (any set, not only a contiguous tail: NAR writes a whole anti-diagonal at its raster
positions) and returns the full buffers. Slots not yet written hold zeros; the caller's attention mask must hide
them (every order-aware mask does, since unwritten slots belong to later levels).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (batch_size, num_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def update(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        """k, v (B, heads, q, d) at sequence positions (q,) -> full cached (k, v) (B, heads, max_len, d)."""
        self.k[:, :, positions] = k.to(self.k.dtype)
        self.v[:, :, positions] = v.to(self.v.dtype)
        return self.k, self.v

    @classmethod
    def for_blocks(cls, blocks, batch_size: int, max_len: int, dtype=torch.float32, device="cpu") -> list[KVCache]:
        """One cache per block (each block has an `attn` with `num_heads` and `head_dim`)."""
        return [cls(batch_size, b.attn.num_heads, max_len, b.attn.head_dim, dtype, device) for b in blocks]
