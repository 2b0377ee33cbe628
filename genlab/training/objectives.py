"""Training objectives: callables `objective(model, batch, generator) -> dict(loss=...)` used by the Trainer.

An objective may hold frozen parts (a tokenizer that encodes images to latents); the Trainer moves it to the
device and never optimises it. All randomness comes from `generator`, which the Trainer seeds from
(seed, step, rank) so that resumed runs are exact.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import drop_labels
from ..schedulers import FlowMatchScheduler


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP / compiled wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise shaped like x, drawn from a CPU generator and moved to x's device (device independent)."""
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


class FlowMatchingObjective(nn.Module):
    """Class-conditional flow matching: x_t = t x + (1 - t) e, target v = x - e, label dropout for CFG.

    With a REPA `teacher` (genlab.training.repa) and `alignment_weight` λ > 0, the model (a DDTModel built with
    repa_layer / repa_dim) also returns its projected encoder features, and the loss is L_fm + λ L_enc with L_enc
    the alignment to the teacher's features of the clean image. The dict then also holds `loss_fm` and `loss_enc`."""

    def __init__(self, scheduler: FlowMatchScheduler, tokenizer: nn.Module | None = None, label_dropout: float = 0.1,
                 teacher: nn.Module | None = None, alignment_weight: float = 0.5):
        super().__init__()
        self.scheduler = scheduler
        self.tokenizer = tokenizer.requires_grad_(False).eval() if tokenizer is not None else None
        self.label_dropout = label_dropout
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        self.alignment_weight = float(alignment_weight)

    def forward(self, model, batch, generator=None):
        clean = x = batch["pixel_values"]
        if self.tokenizer is not None:
            with torch.no_grad():
                x = self.tokenizer.encode(x)
        labels = batch["class_labels"]
        null_class = unwrap(model).config.num_classes
        labels = drop_labels(labels, self.label_dropout, null_class, generator)
        t = self.scheduler.sample_t(x.shape[0], generator).to(x.device)
        noise = randn_like(x, generator)
        x_t = self.scheduler.add_noise(x, noise, t)
        target = self.scheduler.velocity_target(x, noise).float()
        if self.teacher is not None:
            from .repa import alignment_loss

            v, _, projected = model(x_t, t, labels, return_alignment=True)
            p = unwrap(model).config.patch_size
            grid = (x.shape[-2] // p, x.shape[-1] // p)
            loss_fm = F.mse_loss(v.float(), target)
            loss_enc = alignment_loss(projected, self.teacher.patch_features(clean, grid))  # teacher sees clean data
            return {"loss": loss_fm + self.alignment_weight * loss_enc, "loss_fm": loss_fm.detach(),
                    "loss_enc": loss_enc.detach()}
        v = model(x_t, t, labels)
        if isinstance(v, tuple):  # DDT-style models also return their self-condition z: (velocity, z)
            v = v[0]
        return {"loss": F.mse_loss(v.float(), target)}


class TokenizerObjective(nn.Module):
    """Trains an image tokenizer: its forward() is the training forward and returns its loss dict
    (reconstruction + KL or VQ terms). Calling through `model(...)` keeps DDP's gradient hooks in the path."""

    def forward(self, model, batch, generator=None):
        return model(batch["pixel_values"], generator=generator)


class ARTokensObjective(nn.Module):
    """ar_tokens: cross-entropy of a token AR model (ARModel, NARModel) on the VQ ids of the images.

    The frozen VQ `tokenizer` encodes pixel_values to (B, h, w) ids (a model with a 3-D (T, h, w) grid reads the
    batch's `video` (B, T, C, H, W) instead and encodes each frame: per-frame 2-D VQ, the tiny-scale video path); labels are replaced by the null class with
    probability `label_dropout` (CFG); the model gets the unshifted ids and returns (B, N, V) logits aligned with
    them (for NAR: the mixed logits, so the heads are trained only through their average — NAR spec pitfall 1).
    """

    def __init__(self, tokenizer: nn.Module, label_dropout: float = 0.1):
        super().__init__()
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.label_dropout = label_dropout

    def forward(self, model, batch, generator=None):
        bare = unwrap(model)
        with torch.no_grad():
            if len(bare.grid) == 3:  # a (T, h, w) video grid: per-frame 2-D VQ of the clip, frames in time order
                video = batch["video"]
                ids = self.tokenizer.encode(video.flatten(0, 1)).reshape(video.shape[0], -1)
            else:
                ids = self.tokenizer.encode(batch["pixel_values"]).reshape(batch["pixel_values"].shape[0], -1)
        labels = drop_labels(batch["class_labels"], self.label_dropout, bare.config.num_classes, generator)
        logits = model(ids, labels)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1))
        return {"loss": loss}


OBJECTIVES = {"flow_matching": FlowMatchingObjective, "ar_tokens": ARTokensObjective, "tokenizer": TokenizerObjective}
