"""`TrainConfig`: every knob of the shared training loop, with validation and dict round-trip (for YAML recipes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import GenlabError, check_int

LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    `steps` counts optimizer steps (one step = `grad_accum` micro-batches of `batch_size` per process).
    `grad_clip` None or 0 disables clipping; `checkpoint_every`, `sample_every` 0 disable the periodic action
    (a checkpoint is still written at the last step and on interrupt). `ema_warmup=True` uses diffusers'
    EMAModel warm-up (decay = 1 - (1 + step)^-3/4, capped at `ema_decay`), so short runs still get a useful
    EMA; `ema_warmup=False` uses the constant `ema_decay` from the second step on.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    mixed_precision: str = "no"
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int = 0
    log_every: int = 50
    num_workers: int = 0

    def __post_init__(self):
        self.betas = tuple(self.betas)  # YAML and JSON give lists
        for name in ("steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints"):
            _check_int(self, name, minimum=1)
        for name in ("warmup_steps", "checkpoint_every", "sample_every", "num_workers", "seed"):
            _check_int(self, name, minimum=0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise GenlabError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise GenlabError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise GenlabError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.grad_clip is not None and not (isinstance(self.grad_clip, (int, float)) and self.grad_clip >= 0):
            raise GenlabError(f"grad_clip must be None or a number >= 0, got {self.grad_clip!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay <= 1):
            raise GenlabError(f"ema_decay must be in [0, 1], got {self.ema_decay!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise GenlabError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise GenlabError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a plain dict (a recipe's `train:` section); unknown keys are an error, not silently ignored."""
        if not isinstance(d, dict):
            raise GenlabError(f"TrainConfig.from_dict needs a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenlabError(f"unknown TrainConfig key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        """JSON-friendly dict that `from_dict` accepts."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def _check_int(config, name: str, minimum: int):
    setattr(config, name, check_int(getattr(config, name), name, minimum=minimum))
