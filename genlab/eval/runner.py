"""`genlab eval`: score a pipeline folder (class accuracy, Fréchet distance, colour accuracy where the data say the
colour) or a tokenizer folder (reconstruction PSNR/SSIM).

Nothing here knows a method: the conditioning comes from the pipeline's __call__ signature. Class-conditional
pipelines get class-balanced labels 0, 1, .., K-1, 0, ..; prompt-conditioned ones get the captions of the data set's
test split (and are scored against those items' classes and colours); video pipelines are scored frame by frame.
"""

from __future__ import annotations

import os
import time

import torch

from ..errors import GenlabError, check_positive_int
from ..pipelines.loading import accepted, takes_steps

__all__ = ["evaluate_path", "evaluate_pipeline", "evaluate_tokenizer", "generate", "generate_balanced",
           "score_samples", "takes_steps"]


def evaluate_path(path: str, dataset: str | None = None, **kwargs) -> dict:
    if os.path.isfile(os.path.join(path, "model_index.json")):
        return evaluate_pipeline(path, dataset, **kwargs)
    if os.path.isfile(os.path.join(path, "config.json")):
        return evaluate_tokenizer(path, dataset, kwargs.get("batch_size", 100))
    if not os.path.isdir(path):
        raise GenlabError(f"no such folder {path}")
    raise GenlabError(f"{path} holds neither a pipeline (model_index.json) nor a tokenizer (config.json)")


def generate(pipe, inputs: dict, steps: int | None, guidance: float | None, seed: int, batch_size: int = 100,
             **call_args) -> torch.Tensor:
    """Sample once per entry of the conditioning lists in `inputs` (e.g. {"prompt": [...]}) from one seeded
    generator, `batch_size` entries per call. Returns images (N, C, H, W) or clips (N, T, C, H, W) in [-1, 1]."""
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
        raise GenlabError(f"the conditioning lists must have one length, got {sorted(sizes)}")
    n = sizes.pop()
    generator = torch.Generator().manual_seed(seed)
    pipe.set_progress_bar_config(disable=True)
    fixed = accepted(pipe, {"num_inference_steps": steps, "guidance_scale": guidance, **call_args})
    out = []
    for start in range(0, n, batch_size):
        batch = {k: list(v[start:start + batch_size]) for k, v in inputs.items()}
        result = pipe(**batch, generator=generator, output_type="pt", **fixed)
        out.append((result.frames if getattr(pipe, "produces_video", False) else result.images) * 2 - 1)
    return torch.cat(out)


def generate_balanced(pipe, num_classes: int, num_samples: int, steps: int, guidance: float, seed: int,
                      batch_size: int = 100, **call_args) -> tuple[torch.Tensor, torch.Tensor]:
    """num_samples images with labels 0,1,..,K-1,0,1,.. from one seeded generator; images in [-1, 1]."""
    labels = torch.arange(num_samples) % num_classes
    return generate(pipe, {"class_labels": labels.tolist()}, steps, guidance, seed, batch_size, **call_args), labels


def evaluation_inputs(pipe, dataset: str, num_samples: int) -> tuple[dict, torch.Tensor, list | None]:
    """(conditioning lists, the class each sample should show, the attributes each should have or None)."""
    from ..data import load_dataset

    conditioning = pipe.conditioning_inputs()
    if "class_labels" in conditioning:
        num_classes = pipe.num_classes
        labels = torch.arange(num_samples) % num_classes
        return {"class_labels": labels.tolist()}, labels, None
    if "prompt" in conditioning:
        if getattr(pipe, "produces_video", False):  # prompted video: the test clips' captions ("... moving left")
            try:
                test = load_dataset(dataset, split="test", video=True, num_frames=pipe.config.num_frames)
            except GenlabError as e:
                raise GenlabError(f"{type(pipe).__name__} makes prompted clips, but the {dataset} data set has no "
                                  f"captioned clips to prompt it with ({e})") from None
        else:
            test = load_dataset(dataset, split="test")
        if test.captions is None:
            raise GenlabError(f"{type(pipe).__name__} takes prompts, but the {dataset} data set has no captions to "
                              "prompt it with")
        idx = torch.arange(num_samples) % len(test)
        attributes = [test.attributes[i] for i in idx.tolist()] if test.attributes is not None else None
        return {"prompt": [test.captions[i] for i in idx.tolist()]}, test.labels[idx], attributes
    raise GenlabError(f"{type(pipe).__name__} takes neither class_labels nor prompt; genlab eval cannot condition it")


def evaluate_pipeline(path: str, dataset: str | None = None, num_samples: int = 200, steps: int | None = None,
                      guidance: float | None = None, seed: int = 0, batch_size: int = 100) -> dict:
    from ..pipelines.loading import load_pipeline, sampling_defaults, training_info
    from . import load_classifier, real_reference

    num_samples = check_positive_int(num_samples, "num_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    dataset = dataset or training_info(path).get("dataset")
    if dataset is None:
        raise GenlabError(f"{path} has no training_info.json naming its data set: pass --dataset")
    steps, guidance, sample = sampling_defaults(path, steps, guidance)
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    classifier = load_classifier(dataset)
    pipe = load_pipeline(path)
    inputs, labels, attributes = evaluation_inputs(pipe, dataset, num_samples)
    start = time.perf_counter()
    fakes = generate(pipe, inputs, steps, guidance, seed, batch_size, **extra)
    seconds = time.perf_counter() - start
    reals = real_reference(dataset, "test")
    scores = score_samples(fakes, labels, attributes, classifier, reals)
    result = {
        "pipeline": path, "dataset": dataset, "num_samples": num_samples,
        "steps": steps if takes_steps(pipe) else None, "guidance": guidance, "seed": seed,
        "conditioning": sorted(inputs), "class_accuracy": scores["class_accuracy"],
        "frechet_distance": scores["frechet_distance"], "reference_images": len(reals),
        "sampling_seconds": seconds,
    }
    for name in ("color_accuracy", "motion_consistency", "direction_accuracy"):
        if name in scores:
            result[name] = scores[name]
    return result


def score_samples(fakes: torch.Tensor, labels: torch.Tensor, attributes: list | None, classifier, reals) -> dict:
    """class_accuracy and frechet_distance of samples in [-1, 1] (images, or clips scored frame by frame against
    their clip's conditioning), color_accuracy where the attributes name a colour, and for clips whose attributes
    name a direction (genlab's moving shapes) motion_consistency and direction_accuracy (genlab.eval.video)."""
    from . import class_accuracy, color_accuracy, frechet_distance

    motion = {}
    if fakes.dim() == 5 and attributes and all("direction" in a for a in attributes):
        from .video import direction_accuracy, motion_consistency, shapes_min_travel, shapes_step_range

        size, frames = fakes.shape[-1], fakes.shape[1]
        motion = {"motion_consistency": motion_consistency(fakes, shapes_step_range(size)),
                  "direction_accuracy": direction_accuracy(fakes, [a["direction"] for a in attributes],
                                                           shapes_min_travel(size, frames))}
    if fakes.dim() == 5:
        frames = fakes.shape[1]
        fakes, labels = fakes.flatten(0, 1), labels.repeat_interleave(frames)
        attributes = [a for a in attributes for _ in range(frames)] if attributes else None
    scores = {"class_accuracy": class_accuracy(fakes, labels, classifier),
              "frechet_distance": frechet_distance(reals, fakes, classifier)}
    if attributes and all("color" in a for a in attributes):
        scores["color_accuracy"] = color_accuracy(fakes, [a["color"] for a in attributes])
    return {**scores, **motion}


def evaluate_tokenizer(path: str, dataset: str | None = None, batch_size: int = 100) -> dict:
    from ..data import load_dataset
    from ..pipelines.loading import training_info
    from ..tokenizers import load_tokenizer
    from . import reconstruction_psnr, ssim

    dataset = dataset or training_info(path).get("dataset")
    if dataset is None:
        raise GenlabError(f"{path} has no training_info.json naming its data set: pass --dataset")
    tokenizer = load_tokenizer(path).eval()
    images = load_dataset(dataset, split="test").images[:2000]
    with torch.no_grad():
        tokens = [tokenizer.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        recon = torch.cat([tokenizer.decode(t) for t in tokens])
        result = {"tokenizer": path, "dataset": dataset, "images": len(images),
                  "psnr": reconstruction_psnr(tokenizer, images, batch_size), "ssim": ssim(recon.clamp(-1, 1), images)}
        if getattr(tokenizer, "is_discrete", False):  # how much of the codebook the test images use
            result["codebook_usage"], result["codebook_perplexity"] = tokenizer.codebook_usage(torch.cat(tokens))
    return result
