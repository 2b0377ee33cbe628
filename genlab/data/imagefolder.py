"""A folder of the user's images: optional class sub-folders, optional caption `name.txt` by `name.png`."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..errors import GenlabError
from .base import GenlabDataset, check_fraction, stratified_split

SPLITS = ("train", "test", "all")
OPTIONS = ("channels", "test_fraction")
USES_ROOT = True
DEFAULT_IMAGE_SIZE = 32
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")


def _entries(folder):
    """Sorted, non-hidden names in folder."""
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _list_images(folder, skip_folders=False):
    """Image paths in folder (sorted); .txt files are captions and skipped; anything else is an error."""
    paths = []
    for n in _entries(folder):
        path = os.path.join(folder, n)
        ext = os.path.splitext(n)[1].lower()
        if os.path.isdir(path):
            if skip_folders:
                continue
            raise GenlabError(f"imagefolder: unexpected folder {path} (use one level of class sub-folders)")
        if ext in IMAGE_EXTENSIONS:
            paths.append(path)
        elif ext != ".txt":
            raise GenlabError(f"imagefolder: {path} is not an image (expected {', '.join(IMAGE_EXTENSIONS)})")
    return paths


def _read_image(path, channels, size):
    """Image as (C, size, size) uint8: transparent parts on black, centre-cropped to a square, resized."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a corrupt file fails here with its name
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im.convert("RGBA"))
            im = im.convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise GenlabError(f"imagefolder: cannot read image {path} ({type(e).__name__})") from None
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    im = im.resize((size, size), Image.Resampling.BILINEAR)  # PIL antialiases when it shrinks
    a = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(a.reshape(size, size, channels).transpose(2, 0, 1).copy())


def _read_caption(image_path):
    txt = os.path.splitext(image_path)[0] + ".txt"
    if not os.path.isfile(txt):
        return None
    with open(txt, encoding="utf-8", errors="replace") as f:
        return " ".join(f.read().split())  # one line, single spaces


def load(split, image_size, root, seed, channels=3, test_fraction=0.0):
    """Images under `root`: sorted class sub-folders give labels; with none, all images form one class.

    Captions: if any image has a `.txt` beside it, every item gets a caption ("" where the file is missing),
    so batches collate. "train" is every image unless test_fraction > 0 holds out a seeded per-class "test".
    """
    if root is None:
        raise GenlabError("imagefolder: pass root=<folder of images>")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise GenlabError(f"imagefolder: no such folder {root}")
    if channels not in (1, 3):
        raise GenlabError(f"imagefolder: channels must be 1 or 3, got {channels!r}")
    test_fraction = check_fraction(test_fraction, "imagefolder: test_fraction")

    classes = [n for n in _entries(root) if os.path.isdir(os.path.join(root, n))]
    if classes:
        stray = _list_images(root, skip_folders=True)
        if stray:
            raise GenlabError(f"imagefolder: {stray[0]} lies outside the class sub-folders of {root}")
        per_class = [_list_images(os.path.join(root, c)) for c in classes]
        empty = [c for c, ps in zip(classes, per_class) if not ps]
        if empty and len(empty) < len(classes):
            raise GenlabError(f"imagefolder: the class folder {os.path.join(root, empty[0])} holds no images "
                              f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add images")
    else:
        classes = [os.path.basename(os.path.abspath(root))]
        per_class = [_list_images(root)]
    paths = [p for ps in per_class for p in ps]
    labels = np.array([c for c, ps in enumerate(per_class) for _ in ps], dtype=np.int64)
    if not paths:
        raise GenlabError(f"imagefolder: no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")

    idx = stratified_split(labels, split, test_fraction, seed)
    images = torch.stack([_read_image(paths[i], channels, image_size) for i in idx])
    captions = [_read_caption(paths[i]) for i in idx]
    if all(c is None for c in captions):
        captions = None
    else:
        captions = [c or "" for c in captions]
    return GenlabDataset("imagefolder", split, images, labels[idx], classes, captions=captions)
