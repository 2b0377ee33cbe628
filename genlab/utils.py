"""Small image and video helpers used by the CLI, the trainer previews, the demo and the notebooks."""

from __future__ import annotations

import math

import PIL.Image
import torch

from .errors import GenlabError, check_number


def tensor_to_pil(images: torch.Tensor) -> list[PIL.Image.Image]:
    """(B, C, H, W) in [-1, 1] -> list of PIL images (L or RGB)."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if arr.shape[-1] == 1:
        return [PIL.Image.fromarray(a[..., 0], mode="L") for a in arr]
    return [PIL.Image.fromarray(a) for a in arr]


def image_grid(images: list[PIL.Image.Image], rows: int | None = None, pad: int = 2) -> PIL.Image.Image:
    """Paste images into a grid (row-major), `rows` rows (default: as square as possible)."""
    if not images:
        raise GenlabError("image_grid needs at least one image")
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


VIDEO_SUFFIXES = (".gif", ".mp4")


def upscale_to_height(image: PIL.Image.Image, height: int) -> PIL.Image.Image:
    """Enlarge by the smallest whole factor that makes the image at least `height` pixels tall (nearest
    neighbour); never shrinks."""
    factor = max(1, math.ceil(height / image.height))
    return image.resize((image.width * factor, image.height * factor), PIL.Image.NEAREST)


def save_video(frames: list[PIL.Image.Image], path: str, fps: float = 4.0) -> str:
    """Write one clip (a list of PIL frames) with diffusers' exporters: an animated GIF (Pillow alone, loops
    forever) or an MP4 (`export_to_video`, which needs imageio and imageio-ffmpeg: the [video] extra).
    `fps` frames per second. Returns `path`; other suffixes are refused with a clear error."""
    from diffusers.utils import export_to_gif, export_to_video

    if not frames:
        raise GenlabError("save_video needs at least one frame")
    suffix = str(path).lower()[-4:]
    if suffix not in VIDEO_SUFFIXES:
        raise GenlabError(f"save_video writes animated GIFs (.gif) or MP4 videos (.mp4), got {path!r}")
    fps = check_number(fps, "fps", minimum=0, strict_minimum=True)
    mode = "RGB" if any(f.mode != "L" for f in frames) else "L"
    frames = [f.convert(mode) for f in frames]
    if suffix == ".gif":
        # export_to_gif takes whole frames per second; a GIF's frame duration is in milliseconds.
        export_to_gif(frames, str(path), fps=1000 / int(round(1000 / fps)))
        return str(path)
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise GenlabError("writing .mp4 needs imageio and imageio-ffmpeg (pip install -e '.[video]'); "
                          "or write a .gif") from None
    export_to_video([f.convert("RGB") for f in frames], str(path), fps=fps, macro_block_size=1)
    return str(path)


def video_grid(clips: list[list[PIL.Image.Image]], rows: int | None = None, pad: int = 2) -> list[PIL.Image.Image]:
    """Several clips of equal length -> one clip whose frames are image grids (frame t of every clip side by side)."""
    if not clips:
        raise GenlabError("video_grid needs at least one clip")
    return [image_grid([clip[t] for clip in clips], rows=rows, pad=pad) for t in range(len(clips[0]))]
