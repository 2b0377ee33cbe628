"""Two ways to sample faster that every genlab pipeline takes without a line of its own code, both off by default:

* **bf16 autocast** (`sampling_precision(pipe, "bf16")`): `torch.autocast` runs the matmuls, convolutions and
  attention in bfloat16 while autocast's fp32 ops (softmax, norms, losses) and everything outside the autocast
  lists (the sampler's noise, the scheduler's arithmetic, token sampling) stay fp32; weights stay fp32 and outputs
  come back fp32. Samples change by the rounding: `genlab bench speed --precisions fp32 bf16` reports the speed
  ratio and the quality difference on the same seeds.
* **torch.compile** (`compile_pipeline(pipe)`): diffusers' regional compilation. Each network compiles the blocks it
  repeats (`ModelMixin.compile_repeated_blocks` over the class names in `_repeated_blocks`, as diffusers' own
  transformers declare them); a network that declares none (diffusers' `UNet2DModel`) is compiled whole. Blocks are
  what every sampler calls through `forward`, whatever method it calls on the model; work outside them (a token
  sampler, a KV-cache write, the decode) stays eager. The first call compiles (minutes on a CPU), later calls reuse
  the graphs; inputs whose shapes change every step (a growing KV cache) recompile until torch falls back to eager.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import torch
import torch.nn as nn

from ..errors import GenlabError

#: Sampling precisions and the autocast dtype of each (None: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
#: Components that are never compiled: the frozen text encoder runs once per call.
NOT_COMPILED = ("text_encoder",)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise GenlabError(f"unknown sampling precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


def sampling_precision(pipe, precision: str = "fp32"):
    """A context in which `pipe(...)` samples at `precision` ("fp32": unchanged; "bf16": bfloat16 autocast on the
    pipeline's device)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=pipe.device.type, dtype=dtype)


def why_compile_cannot_run() -> str | None:
    """None when torch.compile's default backend can run here, else why not (inductor needs a C++ compiler on CPU)."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if not any(shutil.which(c) for c in (os.environ.get("CXX", "c++"), "g++", "clang++")):
        return "torch.compile's inductor backend needs a C++ compiler on CPU, and none is on PATH (install g++)"
    return None


def compile_plan(pipe) -> dict[str, str]:
    """component -> what `compile_pipeline` compiles in it ("repeated blocks: ...", or "whole module")."""
    plan = {}
    for name, component in pipe.components.items():
        if name in NOT_COMPILED or not isinstance(component, nn.Module):
            continue
        blocks = tuple(getattr(component, "_repeated_blocks", None) or ())
        found = sorted({type(m).__name__ for m in component.modules() if type(m).__name__ in blocks})
        if found:
            plan[name] = "repeated blocks: " + ", ".join(found)
        elif name in ("transformer", "unet"):
            plan[name] = "whole module"
    return plan


def compile_pipeline(pipe, **compile_kwargs) -> dict[str, str]:
    """Compile the networks of `pipe` in place (keyword arguments go to torch.compile); returns `compile_plan`.
    Raises GenlabError where torch.compile cannot run here."""
    reason = why_compile_cannot_run()
    if reason:
        raise GenlabError(f"cannot compile {type(pipe).__name__}: {reason}")
    plan = compile_plan(pipe)
    if not plan:
        raise GenlabError(f"{type(pipe).__name__} has no network to compile")
    for name, what in plan.items():
        component = getattr(pipe, name)
        if what == "whole module":
            component.compile(**compile_kwargs)
        else:
            component.compile_repeated_blocks(**compile_kwargs)
    return plan
