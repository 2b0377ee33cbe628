"""Data sets behind one call: `load_dataset(name, split="train", image_size=None, root=None, seed=0, **opts)`.

Every data set comes back as a `GenlabDataset` (a torch Dataset held in memory) whose items are dicts with
`pixel_values` (C, H, W) float32 in [-1, 1] and `class_labels` (long scalar), plus `caption` (str) and
`video` (T, C, H, W) where the data set has them; `ds.images`, `ds.labels`, `ds.captions` give the split.
Results depend only on the arguments (and `seed`), never on global random state.

Data sets (`DATASETS`):

- `fashion`: Fashion-MNIST (60000 train / 10000 test, 10 classes, 1 channel) read from the official IDX files
  in `root`, $GENLAB_FASHION_ROOT or /usr/share/datasets/fashion-mnist (`apt-get install
  dataset-fashion-mnist`). 28 px padded with black to 32 px by default (28 keeps them native); other sizes
  resize the padded image. Options: none.
- `digits`: scikit-learn's bundled handwritten digits (1797 images, 10 classes, 1 channel), 16 px by default.
  Splits "train" / "test" (per-class seeded split, option `test_fraction=0.2`) and "all".
- `shapes`: procedural RGB shapes (circle, square, triangle, diamond, cross, star) in 8 colours, 2 sizes and
  9 positions on black, with exact captions; 32 px by default. Options `num_samples`, and `video=True`
  (`num_frames=8`) for clips of one shape moving in a straight line, bouncing off the borders (`ds.videos`,
  captions "a small red circle moving up-left"). Defaults: 10000 train / 2000 test images, 2000 / 500 clips.
- `imagefolder`: the user's images under `root` (class sub-folders optional, `name.txt` captions optional),
  centre-cropped and resized to 32 px by default. Options `channels` (3 or 1), `test_fraction` (default 0).
"""

from __future__ import annotations

from ..errors import GenlabError, check_positive_int
from . import digits, fashion, imagefolder, shapes
from .base import GenlabDataset

_MODULES = {"fashion": fashion, "digits": digits, "shapes": shapes, "imagefolder": imagefolder}
DATASETS = tuple(_MODULES)

__all__ = ["DATASETS", "GenlabDataset", "load_dataset"]


def load_dataset(name, split="train", image_size=None, root=None, seed=0, **options) -> GenlabDataset:
    """Load data set `name` (one of `DATASETS`); every user mistake raises a one-line GenlabError.

    `image_size` defaults per data set (fashion 32, digits 16, shapes 32, imagefolder 32); `root` is the
    folder for fashion and imagefolder; `seed` fixes every random choice (splits, procedural samples).
    """
    module = _MODULES.get(name)
    if module is None:
        raise GenlabError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    if split not in module.SPLITS:
        raise GenlabError(f"{name}: unknown split {split!r}; choose from {', '.join(module.SPLITS)}")
    if image_size is None:
        image_size = module.DEFAULT_IMAGE_SIZE
    image_size = check_positive_int(image_size, f"{name}: image_size")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenlabError(f"{name}: seed must be a non-negative integer, got {seed!r}")
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        valid = ", ".join(module.OPTIONS) or "none"
        raise GenlabError(f"{name}: unknown option {unknown[0]!r} (options: {valid})")
    if root is not None and not module.USES_ROOT:
        raise GenlabError(f"{name}: takes no root (it is built in)")
    return module.load(split, image_size, root, seed, **options)
