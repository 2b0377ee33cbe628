"""Video measures: where the drawn object is in each frame, and whether it moves like the data's objects do.

Motion consistency of a clip: the centroid of its bright pixels is found in every frame; the clip moves coherently
when the object is visible in every frame, every frame-to-frame step is as long as the data's steps can be (within
a tolerance), and consecutive steps point the same way (cosine >= `min_cos`). For genlab's moving shapes (one shape,
constant velocity, 0.03-0.06 of the side per frame along each moving axis) real clips score close to 1.

Direction accuracy of prompted clips ("a small red square moving left"): the net displacement of the centroid
from the first to the last frame must be at least half the shortest travel the data's clips make in that many
frames, and of the eight caption directions the one closest to it in angle must be the prompted one (chance 1/8).
Image coordinates: x grows to the right, y downwards, so "up" is (0, -1).
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


def direction_accuracy(clips: torch.Tensor, directions: list, min_travel: float, threshold: float = 0.5) -> float:
    """Fraction of clips whose object moves the way `directions` (one caption word per clip, e.g. "up-left")
    say; `min_travel` is the shortest net first-to-last displacement (pixels) that counts as moving."""
    from ..data.shapes import DIRECTIONS

    c = centroids(clips, threshold)
    if c.shape[1] < 2:
        raise GenlabError("direction needs clips of at least 2 frames")
    if len(directions) != c.shape[0]:
        raise GenlabError(f"{len(directions)} directions for {c.shape[0]} clips")
    unknown = sorted({d for d in directions if d not in DIRECTIONS})
    if unknown:
        raise GenlabError(f"unknown direction {unknown[0]!r}; choose from {', '.join(DIRECTIONS)}")
    names = list(DIRECTIONS)
    units = torch.nn.functional.normalize(torch.tensor([DIRECTIONS[n] for n in names], dtype=torch.float32), dim=-1)
    travel = c[:, -1] - c[:, 0]  # (B, 2); NaN where the object is missing from the first or last frame
    nearest = (torch.nn.functional.normalize(torch.nan_to_num(travel), dim=-1) @ units.T).argmax(-1)
    wanted = torch.tensor([names.index(d) for d in directions])
    moved = torch.nan_to_num(travel.norm(dim=-1), nan=0.0) >= min_travel
    return float((moved & (nearest == wanted)).float().mean())


def shapes_min_travel(image_size: int, num_frames: int) -> float:
    """Half the shortest first-to-last travel (pixels) of genlab's moving shapes over `num_frames` frames."""
    from ..data.shapes import SPEED

    return 0.5 * SPEED[0] * image_size * (num_frames - 1)


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
