"""Rotary position embeddings for 1-D sequences, 2-D token grids and 3-D (frame, row, column) videos.

Frequencies are stored as complex numbers and applied to adjacent channel pairs of q/k (the DDT / LLaMA layout).
For A axes, complex slot j rotates with axis j % A at frequency theta^(-2A*(j // A) / d), so 2-D RoPE
interleaves x and y per frequency exactly like DDT's official code (slot 2k: x, slot 2k+1: y, w_k = theta^(-4k/d)).
Grid coordinates can be normalised to [0, span] (DDT uses span 16) so that any grid size covers the same range.
"""

from __future__ import annotations

import torch

from ..errors import GenlabError


def axis_positions(size: int, span: float | None) -> torch.Tensor:
    """Positions along one axis: 0..size-1, or linspace(0, span, size) when normalised."""
    if span is None:
        return torch.arange(size, dtype=torch.float64)
    return torch.linspace(0, span, size, dtype=torch.float64)


def rope_frequencies(grid: tuple[int, ...], head_dim: int, theta: float = 10000.0,
                     span: float | None = 16.0) -> torch.Tensor:
    """Complex rotations (N, head_dim // 2) for a token grid listed row-major.

    grid is (n,) for 1-D, (h, w) for 2-D and (t, h, w) for 3-D. Axis order inside a frequency group is
    (x, y, t): the last grid axis first, as in DDT's 2-D RoPE.
    """
    axes = len(grid)
    if any(s <= 0 for s in grid):
        raise GenlabError(f"RoPE grid sizes must be positive, got {grid}")
    if head_dim % (2 * axes) != 0:
        raise GenlabError(f"{axes}-D RoPE needs head_dim divisible by {2 * axes}, got head_dim={head_dim}")
    spans = [None] * axes if span is None or axes == 1 else [span] * axes
    coords = torch.meshgrid(*[axis_positions(s, sp) for s, sp in zip(grid, spans)], indexing="ij")
    coords = [c.reshape(-1) for c in reversed(coords)]  # (x, y[, t]) each of length N
    slots = head_dim // 2
    j = torch.arange(slots)
    omega = theta ** (-2.0 * axes * (j // axes).double() / head_dim)  # (slots,)
    pos = torch.stack([coords[a] for a in (j % axes).tolist()], dim=1)  # (N, slots)
    angles = pos * omega
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, N, d) q or k by (N, d/2) complex frequencies; computed in fp32, returned in x's dtype."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    out = torch.view_as_real(xc * freqs.to(x.device)).flatten(-2)
    return out.to(x.dtype)


def sequence_rope(grid: tuple[int, ...], head_dim: int, num_cond: int = 1, cond_rope: str = "zero",
                  theta: float = 10000.0, span: float | None = None) -> torch.Tensor:
    """RoPE table (C + N, head_dim // 2) for the sequence [C cond tokens | grid tokens row-major].

    The grid part is `rope_frequencies(grid, ...)` (integer positions when span is None, as in LlamaGen). Cond rows
    are all zero with cond_rope="zero" (LlamaGen/NAR: the cond token's q and k become 0 — needed for weight
    parity) or the identity rotation with cond_rope="identity".
    """
    if cond_rope not in ("zero", "identity"):
        raise GenlabError(f"cond_rope must be 'zero' or 'identity', got {cond_rope!r}")
    grid_part = rope_frequencies(tuple(grid), head_dim, theta, span)
    fill = torch.zeros if cond_rope == "zero" else torch.ones
    cond = fill(num_cond, head_dim // 2, dtype=torch.complex64)
    return torch.cat([cond, grid_part])
