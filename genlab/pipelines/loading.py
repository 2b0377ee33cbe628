"""Load a saved pipeline folder with clear errors, and read what a pipeline takes and how it was trained to sample.

Every user interface (CLI, eval, benches, demo, gallery) goes through these helpers, so none of them needs to know
which method a folder holds.
"""

from __future__ import annotations

import inspect
import json
import os

from ..errors import GenlabError, first_line
from ..files import read_json


def load_pipeline(path: str, **kwargs):
    """`DiffusionPipeline.from_pretrained(path)` for a local genlab folder, offline, with one-line errors."""
    from diffusers import DiffusionPipeline

    from .. import registry

    if not os.path.isdir(path):
        raise GenlabError(f"no pipeline folder at {path}")
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise GenlabError(f"{path} is not a pipeline folder: model_index.json is missing")
    class_name = read_json(os.path.join(path, "model_index.json"), path).get("_class_name")
    import diffusers

    if not isinstance(class_name, str) or getattr(diffusers, class_name, None) is None:
        raise GenlabError(f"{path}: unknown pipeline class {class_name!r} (genlab knows {registry.pipeline_names()}; "
                          f"a plug-in's pipelines need its module in GENLAB_PLUGINS)")
    try:
        return DiffusionPipeline.from_pretrained(path, **kwargs)
    except GenlabError:
        raise
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise GenlabError(f"cannot load pipeline {path}: {first_line(e)}") from None


def training_info(path: str) -> dict:
    """The training_info.json a `genlab train` run writes beside the pipeline ({} if absent)."""
    file = os.path.join(path, "training_info.json")
    if not os.path.isfile(file):
        return {}
    try:
        with open(file) as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise GenlabError(f"cannot read {file}: {first_line(e)}") from None
    return info if isinstance(info, dict) else {}


def sampling_defaults(path: str, steps=None, guidance=None) -> tuple:
    """(steps, guidance, sample section): the caller's values, else the training recipe's `sample` section, else
    30 steps and CFG 2.0. The sample section also carries other call defaults (temperature, top_k, ...)."""
    sample = training_info(path).get("sample", {})
    steps = steps if steps is not None else sample.get("num_inference_steps", 30)
    guidance = guidance if guidance is not None else sample.get("guidance_scale", 2.0)
    return steps, guidance, sample


def call_parameters(pipe) -> dict:
    """name -> inspect.Parameter of a pipeline's (or pipeline class's) __call__."""
    cls = pipe if inspect.isclass(pipe) else type(pipe)
    params = dict(inspect.signature(cls.__call__).parameters)
    params.pop("self", None)
    return params


def takes_steps(pipe) -> bool:
    """False for pipelines whose number of forward passes is fixed by the model (token AR: ARPipeline, NAR)."""
    return "num_inference_steps" in call_parameters(pipe)


def accepted(pipe, arguments: dict) -> dict:
    """The entries of `arguments` that the pipeline's __call__ takes (None values dropped)."""
    params = call_parameters(pipe)
    return {k: v for k, v in arguments.items() if k in params and v is not None}


def is_video_pipeline(pipe) -> bool:
    return bool(getattr(pipe, "produces_video", False))
