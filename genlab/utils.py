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


def upscale(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Enlarge by the integer factor that brings the longer side closest to `size` (nearest neighbour, so 16 px
    samples stay crisp in a page or a gallery); never shrinks."""
    factor = max(1, size // max(image.size))
    return image.resize((image.width * factor, image.height * factor), PIL.Image.NEAREST)


def save_video(frames: list[PIL.Image.Image], path: str, fps: float = 4.0) -> str:
    """Write one clip (a list of PIL frames) as an animated GIF with Pillow alone (no ffmpeg or other system tool).

    Loops forever; `fps` frames per second. Returns `path`. Other suffixes are refused with a clear error.
    """
    from .errors import GenlabError

    if not frames:
        raise GenlabError("save_video needs at least one frame")
    if not str(path).lower().endswith(".gif"):
        raise GenlabError(f"save_video writes animated GIFs; give a path ending in .gif, got {path!r}")
    if fps <= 0:
        raise GenlabError(f"fps must be > 0, got {fps}")
    mode = "RGB" if any(f.mode != "L" for f in frames) else "L"
    frames = [f.convert(mode) for f in frames]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0,
                   optimize=False, disposal=1)
    return str(path)


def video_grid(clips: list[list[PIL.Image.Image]], rows: int | None = None, pad: int = 2) -> list[PIL.Image.Image]:
    """Several clips of equal length -> one clip whose frames are image grids (frame t of every clip side by side)."""
    if not clips:
        raise ValueError("video_grid needs at least one clip")
    return [image_grid([clip[t] for clip in clips], rows=rows, pad=pad) for t in range(len(clips[0]))]
