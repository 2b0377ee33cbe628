"""`genlab eval`: score a pipeline folder (class accuracy + Frechet distance) or a tokenizer folder (PSNR/SSIM)."""

from __future__ import annotations

import inspect
import os
import time

import torch

from ..errors import GenlabError, check_positive_int


def evaluate_path(path: str, dataset: str | None = None, **kwargs) -> dict:
    if os.path.isfile(os.path.join(path, "model_index.json")):
        return evaluate_pipeline(path, dataset, **kwargs)
    if os.path.isfile(os.path.join(path, "config.json")):
        return evaluate_tokenizer(path, dataset, kwargs.get("batch_size", 100))
    if not os.path.isdir(path):
        raise GenlabError(f"no such folder {path}")
    raise GenlabError(f"{path} holds neither a pipeline (model_index.json) nor a tokenizer (config.json)")


def takes_steps(pipe) -> bool:
    """False for pipelines whose number of forward passes is fixed (token AR: ARPipeline, NARPipeline)."""
    return "num_inference_steps" in inspect.signature(pipe.__call__).parameters


def generate_balanced(pipe, num_classes: int, num_samples: int, steps: int, guidance: float, seed: int,
                      batch_size: int = 100, **call_args) -> tuple[torch.Tensor, torch.Tensor]:
    """num_samples images with labels 0,1,..,K-1,0,1,.. from one seeded generator; images in [-1, 1]."""
    labels = torch.arange(num_samples) % num_classes
    generator = torch.Generator().manual_seed(seed)
    pipe.set_progress_bar_config(disable=True)
    if takes_steps(pipe):
        call_args["num_inference_steps"] = steps
    out = []
    for start in range(0, num_samples, batch_size):
        batch = labels[start:start + batch_size].tolist()
        images = pipe(class_labels=batch, guidance_scale=guidance, generator=generator,
                      output_type="pt", **call_args).images
        out.append(images * 2 - 1)
    return torch.cat(out), labels


def evaluate_pipeline(path: str, dataset: str | None = None, num_samples: int = 200, steps: int | None = None,
                      guidance: float | None = None, seed: int = 0, batch_size: int = 100) -> dict:
    from ..pipelines.loading import load_pipeline, sampling_defaults, training_info
    from . import class_accuracy, frechet_distance, load_classifier, real_reference

    num_samples = check_positive_int(num_samples, "num_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    dataset = dataset or training_info(path).get("dataset")
    if dataset is None:
        raise GenlabError(f"{path} has no training_info.json naming its data set: pass --dataset")
    steps, guidance, sample = sampling_defaults(path, steps, guidance)
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    classifier = load_classifier(dataset)
    pipe = load_pipeline(path)
    if not takes_steps(pipe):  # token AR pipelines: the forward passes are fixed by the decoding order
        steps = len(pipe.transformer.levels)
    num_classes = pipe.transformer.config.num_classes
    start = time.perf_counter()
    fakes, labels = generate_balanced(pipe, num_classes, num_samples, steps, guidance, seed, batch_size, **extra)
    seconds = time.perf_counter() - start
    reals = real_reference(dataset, "test")
    return {
        "pipeline": path, "dataset": dataset, "num_samples": num_samples, "steps": steps, "guidance": guidance,
        "seed": seed, "class_accuracy": class_accuracy(fakes, labels, classifier),
        "frechet_distance": frechet_distance(reals, fakes, classifier), "reference_images": len(reals),
        "sampling_seconds": seconds,
    }


def evaluate_tokenizer(path: str, dataset: str | None = None, batch_size: int = 100) -> dict:
    from ..data import load_dataset
    from ..tokenizers import load_tokenizer
    from . import psnr, ssim

    if dataset is None:
        raise GenlabError("pass --dataset to evaluate a tokenizer's reconstructions")
    tokenizer = load_tokenizer(path).eval()
    images = load_dataset(dataset, split="test").images[:2000]
    with torch.no_grad():
        recon = torch.cat([tokenizer.reconstruct(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return {"tokenizer": path, "dataset": dataset, "images": len(images), "psnr": psnr(recon, images),
            "ssim": ssim(recon, images)}
