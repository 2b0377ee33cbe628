"""What every `genlab bench` shares: loading the pipelines it compares, the machine description, the report file."""

from __future__ import annotations

import os
import platform

import torch

from ..errors import GenlabError


def load_expected(path: str, expected: str, flag: str):
    """Load the pipeline folder `path` and check it holds an `expected` pipeline (named by `flag` in errors)."""
    from ..pipelines.loading import load_pipeline

    pipe = load_pipeline(path)
    if type(pipe).__name__ != expected:
        raise GenlabError(f"{flag} {path} holds a {type(pipe).__name__}, expected a {expected}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def machine_info(threads: int) -> dict:
    return {"torch_threads": threads, "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version()}


def machine_line(m: dict) -> str:
    return (f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}, torch threads: "
            f"{m['torch_threads']}, Python {m['python']}, {m['platform']}.")


def write_report(out: str | None, markdown: str):
    if not out:
        return
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(out, "w") as f:
        f.write(markdown)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenlabError(f"seed must be an integer >= 0, got {seed!r}")
    return seed
