"""Image tokenizers shared by every method: pixels (identity), kl (AutoencoderKL latents), vq (codebook ids)."""

from __future__ import annotations

import json
import os

from ..errors import GenlabError
from .base import ImageTokenizer, reconstruction_psnr
from .kl import KLTokenizer
from .pixels import PixelTokenizer
from .vq import VectorQuantizer, VQTokenizer

TOKENIZERS = {"pixels": PixelTokenizer, "kl": KLTokenizer, "vq": VQTokenizer}


def load_tokenizer(path, subfolder: str | None = None, **kwargs) -> ImageTokenizer:
    """Load a saved tokenizer of any kind: the class comes from `_class_name` in the folder's config.json."""
    folder = os.path.join(str(path), subfolder) if subfolder else str(path)
    config_file = os.path.join(folder, "config.json")
    if not os.path.isfile(config_file):
        raise GenlabError(f"load_tokenizer: no tokenizer in {folder} (missing folder or config.json)")
    try:
        with open(config_file) as f:
            class_name = json.load(f).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise GenlabError(f"load_tokenizer: config.json in {folder} is not a JSON object ({e})") from None
    classes = {cls.__name__: cls for cls in TOKENIZERS.values()}
    if class_name not in classes:
        raise GenlabError(f"load_tokenizer: {folder} holds a {class_name!r}, not one of {sorted(classes)}")
    return classes[class_name].from_pretrained(path, subfolder=subfolder, **kwargs)


__all__ = [
    "TOKENIZERS",
    "ImageTokenizer",
    "KLTokenizer",
    "PixelTokenizer",
    "VQTokenizer",
    "VectorQuantizer",
    "load_tokenizer",
    "reconstruction_psnr",
]
