"""Image tokenizers shared by every method: pixels (identity), kl (AutoencoderKL latents), vq (codebook ids),
multiscale_vq (VAR's multi-scale residual VQ)."""

from __future__ import annotations

import os

from ..errors import GenlabError
from ..eval.metrics import reconstruction_psnr
from ..files import read_json
from .base import ImageTokenizer
from .kl import KLTokenizer
from .multiscale_vq import MultiScaleVQTokenizer
from .pixels import PixelTokenizer
from .vq import VectorQuantizer, VQTokenizer

TOKENIZERS = {"pixels": PixelTokenizer, "kl": KLTokenizer, "vq": VQTokenizer, "multiscale_vq": MultiScaleVQTokenizer}


def load_tokenizer(path, subfolder: str | None = None, **kwargs) -> ImageTokenizer:
    """Load a saved tokenizer of any kind: the class comes from `_class_name` in the folder's config.json."""
    folder = os.path.join(str(path), subfolder) if subfolder else str(path)
    config_file = os.path.join(folder, "config.json")
    if not os.path.isfile(config_file):
        raise GenlabError(f"load_tokenizer: no tokenizer in {folder} (missing folder or config.json)")
    class_name = read_json(config_file, "load_tokenizer").get("_class_name")
    classes = {cls.__name__: cls for cls in TOKENIZERS.values()}
    if class_name not in classes:
        raise GenlabError(f"load_tokenizer: {folder} holds a {class_name!r}, not one of {sorted(classes)}")
    return classes[class_name].from_pretrained(path, subfolder=subfolder, **kwargs)


__all__ = [
    "TOKENIZERS",
    "ImageTokenizer",
    "KLTokenizer",
    "MultiScaleVQTokenizer",
    "PixelTokenizer",
    "VQTokenizer",
    "VectorQuantizer",
    "load_tokenizer",
    "reconstruction_psnr",
]
