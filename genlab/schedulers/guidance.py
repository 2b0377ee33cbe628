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
    guidance) or "linear" (1 at t = 0 rising linearly to scale at t = 1 — MAR/VAR-style ramp)."""

    scale: float = 1.0
    kind: str = "constant"
    interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.kind not in ("constant", "interval", "linear"):
            raise GenlabError(f"unknown guidance schedule {self.kind!r}: use constant, interval or linear")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale) or self.scale < 0:
            raise GenlabError(f"guidance scale must be a finite number >= 0, got {self.scale!r}")
        lo, hi = self.interval
        if not 0 <= lo < hi <= 1:
            raise GenlabError(f"guidance interval must satisfy 0 <= lo < hi <= 1, got {self.interval}")

    def __call__(self, t: float) -> float:
        if self.kind == "constant":
            return self.scale
        if self.kind == "interval":
            lo, hi = self.interval
            return self.scale if lo < t < hi else 1.0
        return 1.0 + (self.scale - 1.0) * float(t)

    @property
    def active(self) -> bool:
        """False when every step would use scale 1 (then the unconditional half need not be computed)."""
        return self.scale != 1.0
