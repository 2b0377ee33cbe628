"""Load a saved pipeline folder with clear errors (missing folder, missing model_index.json, corrupt weights)."""

from __future__ import annotations

import json
import os

from ..errors import GenlabError


def load_pipeline(path: str, **kwargs):
    """`DiffusionPipeline.from_pretrained(path)` for a local genlab folder, offline, with one-line errors."""
    from diffusers import DiffusionPipeline

    if not os.path.isdir(path):
        raise GenlabError(f"no pipeline folder at {path}")
    index = os.path.join(path, "model_index.json")
    if not os.path.isfile(index):
        raise GenlabError(f"{path} is not a pipeline folder: model_index.json is missing")
    try:
        with open(index) as f:
            json.load(f)
    except json.JSONDecodeError as e:
        raise GenlabError(f"{index} is not valid JSON ({e})") from None
    try:
        return DiffusionPipeline.from_pretrained(path, **kwargs)
    except GenlabError:
        raise
    except (OSError, ValueError, AttributeError, KeyError) as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise GenlabError(f"cannot load pipeline {path}: {first.strip()[:300]}") from None


def training_info(path: str) -> dict:
    """The training_info.json a `genlab train` run writes beside the pipeline ({} if absent)."""
    file = os.path.join(path, "training_info.json")
    if not os.path.isfile(file):
        return {}
    with open(file) as f:
        return json.load(f)


def sampling_defaults(path: str, steps=None, guidance=None) -> tuple:
    """(steps, guidance, sample section): the caller's values, else the training recipe's `sample` section, else
    30 steps and CFG 2.0. The sample section also carries other call defaults (temperature, top_k, ...)."""
    sample = training_info(path).get("sample", {})
    steps = steps if steps is not None else sample.get("num_inference_steps", 30)
    guidance = guidance if guidance is not None else sample.get("guidance_scale", 2.0)
    return steps, guidance, sample
