"""Small image helpers used by the CLI, the trainer previews and the notebooks."""

from __future__ import annotations

import math

import PIL.Image
import torch


def tensor_to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """(B, C, H, W) in [-1, 1] -> list of PIL images (L or RGB)."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if arr.shape[-1] == 1:
        return [PIL.Image.fromarray(a[..., 0], mode="L") for a in arr]
    return [PIL.Image.fromarray(a) for a in arr]


def image_grid(images: list[PIL.Image.Image], rows: int | None = None, pad: int = 2) -> PIL.Image.Image:
    """Paste images into a grid (row-major), `rows` rows (default: as square as possible)."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    n = len(images)
    rows = rows or max(1, int(math.sqrt(n)))
    cols = math.ceil(n / rows)
    w, h = images[0].size
    mode = "RGB" if any(im.mode != "L" for im in images) else "L"
    grid = PIL.Image.new(mode, (cols * (w + pad) + pad, rows * (h + pad) + pad), color=0)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(im.convert(mode), (pad + c * (w + pad), pad + r * (h + pad)))
    return grid
