"""Video measures: where the drawn object is in each frame, and whether it moves like the data's objects do.

Motion consistency of a clip: the centroid of its bright pixels is found in every frame; the clip moves coherently
when the object is visible in every frame, every frame-to-frame step is as long as the data's steps can be (within
a tolerance), and consecutive steps point the same way (cosine >= `min_cos`). For genlab's moving shapes (one shape,
constant velocity, 0.03-0.06 of the side per frame along each moving axis) real clips score close to 1.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError


def centroids(clips: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(B, T, C, H, W) clips in [-1, 1] -> (B, T, 2) centroids (x, y) in pixels of the pixels brighter than
    `threshold` (on [0, 1], brightest channel); NaN where a frame has none."""
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5:
        raise GenlabError(f"clips must be a (B, T, C, H, W) tensor, got {getattr(clips, 'shape', type(clips))}")
    x = ((clips.detach().float().cpu().clamp(-1, 1) + 1) / 2).amax(2)  # (B, T, H, W)
    weight = (x > threshold).float()
    h, w = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    mass = weight.sum((-1, -2))
    cx = (weight * xs).sum((-1, -2)) / mass
    cy = (weight * ys).sum((-1, -2)) / mass
    out = torch.stack([cx, cy], -1)
    return torch.where((mass > 0)[..., None], out, torch.full_like(out, math.nan))


def shapes_step_range(image_size: int, tolerance: float = 0.5) -> tuple[float, float]:
    """The frame-to-frame step lengths (pixels) of genlab's moving shapes, widened by `tolerance` either way."""
    from ..data.shapes import SPEED

    lo, hi = SPEED[0] * image_size, SPEED[1] * image_size * math.sqrt(2)  # one axis at the slowest, diagonal fastest
    return lo * (1 - tolerance), hi * (1 + tolerance)


def motion_consistency(clips: torch.Tensor, step_range: tuple[float, float], min_cos: float = 0.5,
                       threshold: float = 0.5) -> float:
    """Fraction of clips that move coherently (see the module doc)."""
    c = centroids(clips, threshold)
    if c.shape[1] < 2:
        raise GenlabError("motion needs clips of at least 2 frames")
    steps = c[:, 1:] - c[:, :-1]  # (B, T-1, 2)
    length = steps.norm(dim=-1)
    visible = ~torch.isnan(c).any(-1).any(-1)
    in_range = ((length >= step_range[0]) & (length <= step_range[1])).all(-1)
    if steps.shape[1] > 1:
        cos = torch.nn.functional.cosine_similarity(steps[:, 1:], steps[:, :-1], dim=-1)
        straight = (cos >= min_cos).all(-1)
    else:
        straight = torch.ones_like(visible)
    return float((visible & in_range & straight).float().mean())
