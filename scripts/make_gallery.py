"""Write the README gallery: one image (or GIF for video pipelines) per shipped pipeline folder.

    python scripts/make_gallery.py [--pipelines pipelines] [--out docs/gallery] [--size 64]

Every folder under --pipelines holding a model_index.json is loaded with `load_pipeline` and sampled once per class
(up to 10 classes; text-conditioned pipelines: the first 8 captions of their data set's test split) with seed 0 and
the "sample" defaults of its training_info.json (as `genlab sample` does). Image
pipelines give `<out>/<folder>.png` (one row, nearest-neighbour upscaled to --size px); pipelines whose output has
`.frames` (video) give `<out>/<folder>.gif`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genlab.eval.runner import evaluation_inputs
from genlab.pipelines.loading import accepted, load_pipeline, sampling_defaults, training_info
from genlab.utils import image_grid, save_video, upscale, video_grid

ROOT = Path(__file__).resolve().parents[1]


def render(folder: Path, out_dir: Path, size: int, seed: int = 0) -> Path:
    steps, guidance, sample = sampling_defaults(str(folder), None, None)
    pipe = load_pipeline(str(folder))
    pipe.set_progress_bar_config(disable=True)
    if "class_labels" in pipe.conditioning_inputs():
        num_classes = getattr(pipe, pipe.conditioning_component).config.num_classes
        inputs = {"class_labels": list(range(min(10, num_classes)))}
    else:
        inputs, _, _ = evaluation_inputs(pipe, training_info(str(folder)).get("dataset"), 8)
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    call = accepted(pipe, {"num_inference_steps": steps, "guidance_scale": guidance, **extra})
    out = pipe(**inputs, generator=torch.Generator().manual_seed(seed), **call)
    if hasattr(out, "frames"):
        clips = [[upscale(frame, size) for frame in clip] for clip in out.frames]
        return Path(save_video(video_grid(clips, rows=1), str(out_dir / f"{folder.name}.gif")))
    path = out_dir / f"{folder.name}.png"
    image_grid([upscale(im, size) for im in out.images], rows=1).save(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", default=str(ROOT / "pipelines"), help="folder of pipeline folders")
    parser.add_argument("--out", default=str(ROOT / "docs" / "gallery"), help="where the images go")
    parser.add_argument("--size", type=int, default=64, help="upscale each sample to about this many pixels")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in Path(args.pipelines).iterdir() if (p / "model_index.json").is_file())
    for folder in folders:
        print(f"wrote {render(folder, out_dir, args.size)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
