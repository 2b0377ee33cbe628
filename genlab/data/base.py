"""`GenlabDataset`, the one Dataset type every genlab data set returns, and helpers the loaders share."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import GenlabError


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]; float tensors are assumed to be in [-1, 1] already.

    Always returns a new tensor, so editing an item in place never changes the stored data set.
    """
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.to(torch.float32, copy=True)


def resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize (N, C, H, W) images to size x size (bilinear, antialias), keeping dtype; uint8 is rounded back.

    Works in chunks so resizing 60k images does not hold a second float copy of the whole split.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = []
    for part in images.split(chunk):
        y = F.interpolate(to_float(part), (size, size), mode="bilinear", antialias=True, align_corners=False)
        y = y.clamp_(-1, 1)  # antialias weights can overshoot a little
        out.append(y.add(1).mul_(127.5).round_().to(torch.uint8) if images.dtype == torch.uint8 else y)
    return torch.cat(out)


def stratified_split(labels: np.ndarray, split: str, test_fraction: float, seed: int) -> np.ndarray:
    """Indices of `split` ("train", "test" or "all") of a seeded per-class split; sorted, so order is stable.

    Each class puts round(n_class * test_fraction) of its samples in "test", so both keep the class mix.
    """
    labels = np.asarray(labels)
    if split == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[: int(round(len(idx) * test_fraction))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    idx = np.flatnonzero(is_test if split == "test" else ~is_test)
    if len(idx) == 0:
        raise GenlabError(f"the {split} split is empty with test_fraction={test_fraction}")
    return idx


class GenlabDataset(Dataset):
    """A whole split held in memory: images (N, C, H, W), labels (N,), optional captions and videos.

    Images and videos may be stored as uint8 (converted to float [-1, 1] per item, and once for the whole
    split on first access of `ds.images` / `ds.videos`) or as float tensors already in [-1, 1].
    Items are dicts the default torch collate can batch: `pixel_values`, `class_labels`, and `caption` /
    `video` only when the data set has them (keys are left out rather than set to None).
    """

    def __init__(self, name, split, images, labels, class_names, captions=None, videos=None, attributes=None):
        if videos is not None:
            images = videos[:, 0]  # a video data set's image is the clip's first frame
        self.name, self.split = name, split
        self.class_names = [str(c) for c in class_names]
        self.num_classes = len(self.class_names)
        self.channels, self.image_size = int(images.shape[1]), int(images.shape[-1])
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.captions = list(captions) if captions is not None else None
        self.attributes = attributes  # per-sample dicts describing procedural samples (shapes), else None
        self._images, self._videos = images, videos
        self._images_f = self._videos_f = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """The whole split as an (N, C, H, W) float32 tensor in [-1, 1] (computed once, then cached)."""
        if self._images_f is None:
            self._images_f = to_float(self._images)
        return self._images_f

    @property
    def videos(self) -> torch.Tensor | None:
        """(N, T, C, H, W) float32 in [-1, 1] for video data sets, else None."""
        if self._videos is None:
            return None
        if self._videos_f is None:
            self._videos_f = to_float(self._videos)
        return self._videos_f

    def __getitem__(self, i):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}/{self.split}: index {i} out of range for {len(self)} samples")
        src = self._images_f if self._images_f is not None else self._images
        item = {"pixel_values": to_float(src[i]), "class_labels": self.labels[i]}
        if self.captions is not None:
            item["caption"] = self.captions[i]
        if self._videos is not None:
            item["video"] = self._videos_f[i] if self._videos_f is not None else to_float(self._videos[i])
        return item

    def __repr__(self) -> str:
        extra = f", frames={self._videos.shape[1]}" if self._videos is not None else ""
        return (f"GenlabDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.num_classes}, channels={self.channels}, image_size={self.image_size}{extra})")


def check_fraction(value, name: str) -> float:
    """Return value as a float in [0, 1), or raise GenlabError."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GenlabError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= value < 1.0:
        raise GenlabError(f"{name} must be in [0, 1), got {value}")
    return value
