"""Decoding orders of autoregressive token models and the attention masks that go with them.

An order is a list of *levels*: each level is a (n_k,) long tensor of row-major token indices that are produced in
one forward pass. `raster_levels` gives one token per level (next-token AR, LlamaGen); `ring_levels` groups the
tokens of equal Manhattan distance from a start cell (NAR: anti-diagonals of an H x W grid, planes t+h+w = c of a
T x H x W video), ascending index inside a level (so rows ascend, as in NAR's official sampler).

Masks are boolean, True = "may attend", laid out over the sequence [cond tokens | grid tokens in raster order]:
- `causal_mask(n)`: plain lower-triangular mask.
- `level_mask(level_of, num_cond)`: image token p sees image token q iff level(q) <= level(p) (causal across levels,
  bidirectional inside a level); every image token sees every cond token; cond tokens are causal among themselves
  and see no image token. `proximity_mask(grid)` is this mask for the ring order (NAR's `setup_proximity_mask`).
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError


def check_grid(grid) -> tuple[int, ...]:
    """A grid is (n,), (H, W) or (T, H, W) of positive ints; anything else is a one-line GenlabError."""
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = (grid,)
    try:
        grid = tuple(grid)
    except TypeError:
        raise GenlabError(f"grid must be a tuple of 1 to 3 positive sizes, got {grid!r}") from None
    if not 1 <= len(grid) <= 3 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in grid):
        raise GenlabError(f"grid sizes must be 1 to 3 positive integers, got {grid}")
    return grid


def check_start(grid: tuple[int, ...], start) -> tuple[int, ...]:
    if start is None:
        return (0,) * len(grid)
    start = tuple(int(s) for s in start)
    if len(start) != len(grid) or any(not 0 <= s < n for s, n in zip(start, grid)):
        raise GenlabError(f"start cell {start} lies outside the grid {grid}")
    return start


def grid_coordinates(grid) -> torch.Tensor:
    """(N, len(grid)) long coordinates of every cell, row-major."""
    grid = check_grid(grid)
    axes = torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij")
    return torch.stack([a.reshape(-1) for a in axes], dim=1)


def manhattan_distance(grid, start=None) -> torch.Tensor:
    """(N,) Manhattan distance of every cell (row-major) from `start` (default: the first cell)."""
    grid = check_grid(grid)
    start = torch.tensor(check_start(grid, start))
    return (grid_coordinates(grid) - start).abs().sum(1)


def levels_from_ids(level_of: torch.Tensor) -> list[torch.Tensor]:
    """Group token indices by level id (level ids 0..K-1, each non-empty), ascending index inside a level."""
    order = torch.argsort(level_of * level_of.numel() + torch.arange(level_of.numel()))
    counts = torch.bincount(level_of).tolist()
    return list(torch.split(order, counts))


def ring_levels(grid, start=None) -> list[torch.Tensor]:
    """NAR's order: level k holds the cells at Manhattan distance k from `start`. 8x8 -> 15 levels, 16x16 -> 31,
    4x16x16 -> 34."""
    return levels_from_ids(manhattan_distance(grid, start))


def raster_levels(grid) -> list[torch.Tensor]:
    """Next-token order: one cell per level, row-major."""
    n = math.prod(check_grid(grid))
    return list(torch.arange(n).split(1))


def level_ids(levels: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of a level list: (N,) level of every token."""
    n = sum(len(lv) for lv in levels)
    out = torch.full((n,), -1, dtype=torch.long)
    for k, lv in enumerate(levels):
        out[lv] = k
    if (out < 0).any():
        raise GenlabError("levels do not cover every token")
    return out


def causal_mask(n: int) -> torch.Tensor:
    """(n, n) lower-triangular boolean mask (True = may attend)."""
    return torch.ones(n, n, dtype=torch.bool).tril()


def level_mask(level_of: torch.Tensor, num_cond: int = 0) -> torch.Tensor:
    """((C+N), (C+N)) mask for [C cond | N tokens]: token p sees token q iff level(q) <= level(p), sees all cond;
    cond is causal among itself and sees no token."""
    n = level_of.numel()
    mask = torch.zeros(num_cond + n, num_cond + n, dtype=torch.bool)
    mask[:num_cond, :num_cond] = causal_mask(num_cond)
    mask[num_cond:, :num_cond] = True
    mask[num_cond:, num_cond:] = level_of[None, :] <= level_of[:, None]
    return mask


def check_patch_nums(patch_nums) -> tuple[int, ...]:
    """VAR's scale schedule: the side of each scale's token map, positive and strictly increasing (a one-line
    error otherwise)."""
    try:
        nums = tuple(int(p) for p in patch_nums)
    except (TypeError, ValueError):
        raise GenlabError(f"patch_nums must be a sequence of integers, got {patch_nums!r}") from None
    if not nums or any(p <= 0 for p in nums) or any(b <= a for a, b in zip(nums, nums[1:])):
        raise GenlabError(f"patch_nums must be positive and strictly increasing, got {list(nums)}")
    return nums


def same_level_mask(level_of: torch.Tensor) -> torch.Tensor:
    """(N, N) block-diagonal mask: token p sees token q iff level(q) == level(p) (M-VAR's intra-scale attention)."""
    return level_of[None, :] == level_of[:, None]


def proximity_mask(grid, start=None, num_cond: int = 0) -> torch.Tensor:
    """NAR's proximity-aware mask: `level_mask` of the Manhattan distance from `start`."""
    return level_mask(manhattan_distance(grid, start), num_cond)


def raster_mask(grid, num_cond: int = 0) -> torch.Tensor:
    """Causal mask over [cond | raster tokens] (identical to `causal_mask(C + N)`)."""
    n = math.prod(check_grid(grid))
    return causal_mask(num_cond + n)
