"""Procedural RGB shapes on black with exact captions ("a small red triangle at the top left"), and clips.

Every sample is drawn with PIL at 4x resolution and box-downsampled (antialiased edges). Attributes come from
a numpy generator seeded by (seed, split, video), so train and test differ and a seed always gives the same
data. `ds.attributes[i]` holds what the caption says (shape, color, size, position or direction) plus the
exact centre in pixels, so tests and evaluations can check captions against pixels.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import check_positive_int, GenlabError
from .base import GenlabDataset

SPLITS = ("train", "test")
OPTIONS = ("num_samples", "video", "num_frames")
USES_ROOT = False
DEFAULT_IMAGE_SIZE = 32
DEFAULT_NUM_SAMPLES = {False: {"train": 10000, "test": 2000}, True: {"train": 2000, "test": 500}}
DEFAULT_NUM_FRAMES = 8

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
          "magenta": (255, 0, 255), "cyan": (0, 255, 255), "white": (255, 255, 255), "orange": (255, 128, 0)}
SIZES = {"small": 0.10, "large": 0.16}  # circumradius as a fraction of the image side
# 3x3 grid; centres at 0.2 / 0.5 / 0.8 of the side keep a large shape inside the image and its centre inside
# the captioned third even with the jitter below.
GRID = (0.2, 0.5, 0.8)
JITTER = 0.03
POSITIONS = ("top left", "top", "top right", "left", "center", "right",
             "bottom left", "bottom", "bottom right")
PHRASES = {"center": "in the center", "left": "on the left", "right": "on the right"}
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1),
              "up-right": (1, -1), "up-left": (-1, -1), "down-right": (1, 1), "down-left": (-1, 1)}
SPEED = (0.03, 0.06)  # pixels per frame along each moving axis, as a fraction of the image side
SUPERSAMPLE = 4


def shape_polygon(shape: str, cx: float, cy: float, r: float):
    """Vertices of `shape` centred at (cx, cy) with extent r along each axis (None for the circle)."""
    def ring(radii, start=-90.0):
        a = np.deg2rad(start + 360.0 * np.arange(len(radii)) / len(radii))
        return [(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radii, a)]

    if shape == "circle":
        return None
    if shape == "square":
        h = 0.8 * r  # a little smaller than the circle, so both cover a similar area
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return ring([r] * 3)  # equilateral, pointing up: its centroid is (cx, cy)
    if shape == "diamond":
        return ring([r] * 4)
    if shape == "cross":
        t = 0.3 * r
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
                (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
                (cx - r, cy - t), (cx - t, cy - t)]
    if shape == "star":
        return ring([r, 0.45 * r] * 5)
    raise GenlabError(f"shapes: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def draw(shape: str, color, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """One (size, size, 3) uint8 image: `shape` in `color` centred at (cx, cy) pixels, radius r pixels."""
    s = SUPERSAMPLE
    im = Image.new("RGB", (size * s, size * s))
    poly = shape_polygon(shape, cx * s, cy * s, r * s)
    if poly is None:
        ImageDraw.Draw(im).ellipse((s * (cx - r), s * (cy - r), s * (cx + r), s * (cy + r)), fill=color)
    else:
        ImageDraw.Draw(im).polygon(poly, fill=color)
    return np.asarray(im.reduce(s))


def reflect(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold unbounded positions back into [lo, hi] like a ball bouncing between two walls."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _attributes(rng, n, size, video, num_frames):
    """Random attributes and exact per-frame centres (n, T, 2) for n samples (T = 1 for images)."""
    shape = rng.integers(len(SHAPES), size=n)
    color = rng.integers(len(COLORS), size=n)
    big = rng.integers(2, size=n)
    radius = np.where(big == 1, SIZES["large"], SIZES["small"]) * size
    if not video:
        pos = rng.integers(len(POSITIONS), size=n)
        grid = np.array(GRID) * size
        centre = np.stack([grid[pos % 3], grid[pos // 3]], 1) + rng.uniform(-JITTER, JITTER, (n, 2)) * size
        return shape, color, big, radius, pos, centre[:, None]
    direction = rng.integers(len(DIRECTIONS), size=n)
    unit = np.array(list(DIRECTIONS.values()), dtype=np.float64)[direction]  # (n, 2)
    velocity = unit * rng.uniform(*SPEED, (n, 1)) * size
    lo = (radius + 1.0)[:, None]  # keep a 1 px black border, so the whole shape stays in view
    hi = size - lo
    travel = np.abs(velocity) * (num_frames - 1)
    # Start where the first leg fits inside the image when it can, so the caption's direction holds for the
    # whole clip; longer clips start at the trailing wall and bounce (the caption names the first leg).
    u = rng.uniform(0, 1, (n, 2))
    room = np.clip(hi - lo - travel, 0, None)
    start = np.where(velocity > 0, lo + u * room, np.where(velocity < 0, hi - u * room, lo + u * (hi - lo)))
    t = np.arange(num_frames)[None, :, None]
    centre = reflect(start[:, None] + velocity[:, None] * t, lo[:, None], hi[:, None])
    return shape, color, big, radius, direction, centre


@functools.lru_cache(maxsize=8)
def _generate(split, seed, size, num_samples, video, num_frames):
    rng = np.random.default_rng([seed, SPLITS.index(split), int(video)])
    shape, color, big, radius, where, centre = _attributes(rng, num_samples, size, video, num_frames)
    colors, directions = list(COLORS), list(DIRECTIONS)
    frames = np.empty((num_samples, centre.shape[1], size, size, 3), np.uint8)
    captions, attributes = [], []
    for i in range(num_samples):
        a = {"shape": SHAPES[shape[i]], "color": colors[color[i]], "size": "large" if big[i] else "small"}
        for t, (cx, cy) in enumerate(centre[i]):
            frames[i, t] = draw(a["shape"], COLORS[a["color"]], cx, cy, radius[i], size)
        if video:
            a["direction"] = directions[where[i]]
            captions.append(f"a {a['size']} {a['color']} {a['shape']} moving {a['direction']}")
        else:
            a["position"] = POSITIONS[where[i]]
            phrase = PHRASES.get(a["position"], f"at the {a['position']}")
            captions.append(f"a {a['size']} {a['color']} {a['shape']} {phrase}")
        a["centers"] = centre[i].tolist()  # exact (x, y) centre in pixels for every frame
        a["radius"] = float(radius[i])
        attributes.append(a)
    frames = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()  # (N, T, 3, H, W)
    return frames, torch.from_numpy(shape), captions, attributes


def load(split, image_size, root, seed, num_samples=None, video=False, num_frames=None):
    """`num_samples` shapes images (or clips with video=True, each `num_frames` long) at image_size px."""
    if not isinstance(video, bool):
        raise GenlabError(f"shapes: video must be True or False, got {video!r}")
    if num_frames is not None and not video:
        raise GenlabError("shapes: num_frames needs video=True")
    num_frames = DEFAULT_NUM_FRAMES if num_frames is None else num_frames
    num_frames = check_positive_int(num_frames, "shapes: num_frames") if video else 1
    if num_samples is None:
        num_samples = DEFAULT_NUM_SAMPLES[video][split]
    num_samples = check_positive_int(num_samples, "shapes: num_samples")
    frames, labels, captions, attributes = _generate(split, seed, image_size, num_samples, video, num_frames)
    attributes = [dict(a) for a in attributes]  # the cache stays untouched if a caller edits these
    if video:
        return GenlabDataset("shapes", split, None, labels, SHAPES, captions, frames, attributes)
    return GenlabDataset("shapes", split, frames[:, 0], labels, SHAPES, captions, attributes=attributes)
