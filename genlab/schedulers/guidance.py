"""Classifier-free guidance: the combination rule and schedules of the guidance scale over sampling progress.

Batches for CFG are ordered [uncond ; cond] everywhere in genlab. A schedule maps genlab time t (0 = noise,
1 = data; for autoregressive models, the fraction of tokens already generated) to a scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GenlabError


def apply_cfg(out_uncond: torch.Tensor, out_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond); scale 1 returns cond."""
    return out_uncond + scale * (out_cond - out_uncond)


def cfg_labels(labels: torch.Tensor, null_id: int) -> torch.Tensor:
    """The conditioning of a CFG batch: [null ; labels]."""
    return torch.cat([torch.full_like(labels, null_id), labels])


def cfg_inputs(x: torch.Tensor, labels: torch.Tensor, null_id: int):
    """Double a batch for CFG: ([x ; x], [null ; labels])."""
    return torch.cat([x, x]), cfg_labels(labels, null_id)


def cfg_combine(out: torch.Tensor, scale: float) -> torch.Tensor:
    """Split a [uncond ; cond] model output and guide it: apply_cfg at `scale`, the conditional half at scale 1."""
    out_uncond, out_cond = out.chunk(2)
    return out_cond if scale == 1.0 else apply_cfg(out_uncond, out_cond, scale)


@dataclass(frozen=True)
class GuidanceSchedule:
    """kind: "constant" (scale everywhere), "interval" (scale for lo < t < hi, strict, else 1 — DDT/REPA interval
    guidance), "linear" (1 at t = 0 rising linearly to scale at t = 1 — MAR/VAR-style ramp) or "tokens" (token
    models only: scale while at most `max_tokens` tokens exist before a step, else 1 — the official NAR sampler's
    `--cfg-interval k`, which always guides the first step). For token models t is the fraction of tokens already
    generated; `at_tokens(done, total)` is the scale of a step that starts with `done` of `total` tokens."""

    scale: float = 1.0
    kind: str = "constant"
    interval: tuple[float, float] = (0.0, 1.0)
    max_tokens: int | None = None

    def __post_init__(self):
        if self.kind not in ("constant", "interval", "linear", "tokens"):
            raise GenlabError(f"unknown guidance schedule {self.kind!r}: use constant, interval, linear or tokens")
        if (self.kind == "tokens") != (self.max_tokens is not None):
            raise GenlabError("the 'tokens' guidance schedule takes max_tokens (an integer >= 0), and only it does")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
                                            or self.max_tokens < 0):
            raise GenlabError(f"max_tokens must be an integer >= 0, got {self.max_tokens!r}")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) or self.scale < 0:
            raise GenlabError(f"guidance scale must be a finite number >= 0, got {self.scale!r}")
        lo, hi = self.interval
        if not 0 <= lo < hi <= 1:
            raise GenlabError(f"guidance interval must satisfy 0 <= lo < hi <= 1, got {self.interval}")

    def __call__(self, t: float) -> float:
        if self.kind == "tokens":
            raise GenlabError("the 'tokens' guidance schedule counts tokens: use at_tokens(done, total)")
        if self.kind == "constant":
            return self.scale
        if self.kind == "interval":
            lo, hi = self.interval
            return self.scale if lo < t < hi else 1.0
        return 1.0 + (self.scale - 1.0) * float(t)

    def at_tokens(self, done: int, total: int) -> float:
        """The scale of a token-model step that starts with `done` of `total` tokens generated."""
        if self.kind == "tokens":
            return self.scale if done <= self.max_tokens else 1.0
        return self(done / total)

    @property
    def active(self) -> bool:
        """False when every step would use scale 1 (then the unconditional half need not be computed)."""
        return self.scale != 1.0
