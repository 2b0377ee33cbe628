"""Fashion-MNIST read from the four official IDX files (gzip or plain), 28 px padded to 32 px by default."""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GenlabError
from .base import GenlabDataset, resize

SPLITS = ("train", "test")
OPTIONS = ()
USES_ROOT = True
DEFAULT_IMAGE_SIZE = 32
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HOW_TO_GET = "apt-get install dataset-fashion-mnist, or pass root=<folder with the four IDX files>"


def find_file(root: str, stem: str) -> str:
    """Path of `stem` or `stem.gz` in root, or a GenlabError that says how to get the files."""
    for path in (os.path.join(root, stem + ".gz"), os.path.join(root, stem)):
        if os.path.isfile(path):
            return path
    raise GenlabError(f"fashion: missing {stem}(.gz) in {root}; {HOW_TO_GET}")


@functools.lru_cache(maxsize=4)
def _read_idx(path: str, mtime_ns: int, size: int) -> np.ndarray:
    # mtime/size are part of the cache key only, so a replaced file is read again.
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise GenlabError(f"fashion: cannot read {path} ({e})") from None
    # IDX header: two zero bytes, type code 0x08 (unsigned byte), number of dims, then big-endian int32 dims.
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] not in (1, 3):
        raise GenlabError(f"fashion: {path} is not an IDX ubyte file (bad magic number)")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    # bytearray: a writable buffer, so torch.from_numpy does not warn about read-only memory.
    body = np.frombuffer(bytearray(data), np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise GenlabError(f"fashion: {path} is corrupt: header says {dims} but it holds {body.size} bytes")
    return body.reshape(dims)


def read_idx(path: str) -> np.ndarray:
    """The uint8 array stored in an IDX file (cached while the file is unchanged)."""
    st = os.stat(path)
    return _read_idx(path, st.st_mtime_ns, st.st_size)


def load(split, image_size, root, seed):
    """Fashion-MNIST `split` from `root` (default: $GENLAB_FASHION_ROOT or /usr/share/datasets/fashion-mnist).

    image_size 32 pads the 28 px images with black; 28 keeps them as they are; any other size resizes the
    32 px padded image, so every resolution shows the same framing. `seed` is unused: the split is fixed.
    """
    root = root or os.environ.get("GENLAB_FASHION_ROOT") or DEFAULT_ROOT
    if not os.path.isdir(root):
        raise GenlabError(f"fashion: no such folder {root}; {HOW_TO_GET}")
    image_stem, label_stem = FILES[split]
    image_path, label_path = find_file(root, image_stem), find_file(root, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise GenlabError(f"fashion: {image_path} {images.shape} does not match {label_path} {labels.shape}")
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise GenlabError(f"fashion: {label_path} holds labels outside 0..9")
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 28, 28) uint8, a view on the cached array
    if image_size != 28:
        x = F.pad(x, (2, 2, 2, 2))  # zero = black, the background colour of Fashion-MNIST
        x = resize(x, image_size)
    return GenlabDataset("fashion", split, x, torch.from_numpy(labels.astype(np.int64)), CLASS_NAMES)
