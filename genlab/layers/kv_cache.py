"""A key/value cache filled in decoding order, for autoregressive decoding of any order (raster, NAR rings).

The cache holds (B, heads, max_len, head_dim) keys and values and appends the new entries of every step after the
previous ones, remembering the sequence position of each (`filled_positions`). Attention then runs over the filled
entries only, not over `max_len` slots of which most are still empty: for raster AR at step n that is n + 1 keys
instead of the whole sequence, which matters on a CPU where the attention kernel's cost grows with the key count.
The caller builds the mask over the filled entries from their positions (`attention_mask[positions][:, filled]`).
"""

from __future__ import annotations

import torch

from ..errors import GenlabError


class KVCache:
    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (batch_size, num_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.positions = torch.full((max_len,), -1, dtype=torch.long, device=device)
        self.length = 0

    @property
    def filled_positions(self) -> torch.Tensor:
        """(L,) sequence positions of the filled entries, in the order they were written."""
        return self.positions[: self.length]

    def update(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor):
        """Append k, v (B, heads, q, d) of sequence positions (q,); return the filled (k, v) (B, heads, L, d)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise GenlabError(f"KV cache overflow: {end} entries for a cache of {self.k.shape[2]}")
        self.k[:, :, self.length:end] = k.to(self.k.dtype)
        self.v[:, :, self.length:end] = v.to(self.v.dtype)
        self.positions[self.length:end] = positions.to(self.positions.device)
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    @classmethod
    def for_blocks(cls, blocks, batch_size: int, max_len: int, dtype=torch.float32, device="cpu") -> list[KVCache]:
        """One cache per block (each block has an `attn` with `num_heads` and `head_dim`)."""
        return [cls(batch_size, b.attn.num_heads, max_len, b.attn.head_dim, dtype, device) for b in blocks]
