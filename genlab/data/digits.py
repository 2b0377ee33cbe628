"""scikit-learn's bundled handwritten digits (1797 images, 8x8, values 0..16), resized, seeded split."""

from __future__ import annotations

import functools

import torch

from .base import GenlabDataset, check_fraction, resize, stratified_split

SPLITS = ("train", "test", "all")
OPTIONS = ("test_fraction",)
USES_ROOT = False
DEFAULT_IMAGE_SIZE = 16
CLASS_NAMES = [str(d) for d in range(10)]


@functools.lru_cache(maxsize=1)
def _raw():
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    d = load_digits()
    return torch.from_numpy(d.images).float(), torch.from_numpy(d.target).long()


def load(split, image_size, root, seed, test_fraction=0.2):
    """Digits `split` at image_size px; "train"/"test" are a per-class seeded split, "all" is every image."""
    test_fraction = check_fraction(test_fraction, "digits: test_fraction")
    images, labels = _raw()
    idx = torch.from_numpy(stratified_split(labels.numpy(), split, test_fraction, seed))
    x = images[idx].unsqueeze(1) / 8.0 - 1.0  # 0..16 -> [-1, 1]
    return GenlabDataset("digits", split, resize(x, image_size), labels[idx], CLASS_NAMES)
