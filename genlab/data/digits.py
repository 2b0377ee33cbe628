"""scikit-learn's bundled handwritten digits (1797 images, 8x8, values 0..16), resized, seeded split.

With `captions=True` every image also gets a caption that needs more than its class to write, "a {thin|thick}
{upright|slanted} {digit name}" (ETT's captioning data): thickness is the median split of the ink (mean intensity)
and slant the median split of the rightward lean (the intensity-weighted shear -cov(x, y) / var(y), y pointing
down), both medians over all 1797 images, so a caption never depends on the split. `ds.attributes[i]` holds the
words and the two measured values."""

from __future__ import annotations

import functools

import torch

from ..errors import GenlabError
from .base import GenlabDataset, check_fraction, resize, stratified_split

SPLITS = ("train", "test", "all")
OPTIONS = ("test_fraction", "captions")
USES_ROOT = False
DEFAULT_IMAGE_SIZE = 16
CLASS_NAMES = [str(d) for d in range(10)]
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@functools.lru_cache(maxsize=1)
def _raw():
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    d = load_digits()
    return torch.from_numpy(d.images).float(), torch.from_numpy(d.target).long()


def stroke_measures(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) intensities >= 0 -> (ink: mean intensity / 16, lean: -cov(x, y) / var(y) with y pointing down; > 0
    when the top of the digit lies to the right of its bottom)."""
    n, h, w = images.shape
    mass = images.sum((1, 2)).clamp(min=1e-6)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    mx = (images * xs).sum((1, 2)) / mass
    my = (images * ys).sum((1, 2)) / mass
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    cov = (images * dx * dy).sum((1, 2)) / mass
    var_y = (images * dy * dy).sum((1, 2)) / mass
    return images.mean((1, 2)) / 16.0, -cov / var_y.clamp(min=1e-6)


@functools.lru_cache(maxsize=1)
def _attributes():
    images, labels = _raw()
    ink, lean = stroke_measures(images)
    thick, slanted = ink > ink.median(), lean > lean.median()
    return [{"digit": DIGIT_NAMES[int(c)], "thickness": "thick" if t else "thin",
             "slant": "slanted" if s else "upright", "ink": float(i), "lean": float(le)}
            for c, t, s, i, le in zip(labels, thick, slanted, ink, lean)]


def caption(a: dict) -> str:
    return f"a {a['thickness']} {a['slant']} {a['digit']}"


def load(split, image_size, root, seed, test_fraction=0.2, captions=False):
    """Digits `split` at image_size px; "train"/"test" are a per-class seeded split, "all" is every image."""
    test_fraction = check_fraction(test_fraction, "digits: test_fraction")
    if not isinstance(captions, bool):
        raise GenlabError(f"digits: captions must be true or false, got {captions!r}")
    images, labels = _raw()
    idx = torch.from_numpy(stratified_split(labels.numpy(), split, test_fraction, seed))
    x = images[idx].unsqueeze(1) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    if not captions:
        return GenlabDataset("digits", split, resize(x, image_size), labels[idx], CLASS_NAMES)
    attributes = [_attributes()[i] for i in idx.tolist()]
    return GenlabDataset("digits", split, resize(x, image_size), labels[idx], CLASS_NAMES,
                         captions=[caption(a) for a in attributes], attributes=attributes)
