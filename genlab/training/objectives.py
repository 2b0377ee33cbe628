"""Training objectives: callables `objective(model, batch, generator) -> dict(loss=...)` used by the Trainer.

An objective may hold frozen parts (a tokenizer that encodes images to latents); the Trainer moves it to the
device and never optimises it. All randomness comes from `generator`, which the Trainer seeds from
(seed, step, rank) so that resumed runs are exact.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError
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


def encode_latents(tokenizer: nn.Module, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A continuous tokenizer's latents of `images`: a posterior sample where the tokenizer has one (as MAR and
    latent diffusion train on), else its deterministic encoding."""
    import inspect

    if "sample" in inspect.signature(tokenizer.encode).parameters:
        return tokenizer.encode(images, generator=generator, sample=True)
    return tokenizer.encode(images)


class FlowMatchingObjective(nn.Module):
    """Class-conditional flow matching: x_t = t x + (1 - t) e, target v = x - e, label dropout for CFG.

    The model is called as model(x_t, t, labels) and returns an output with `.sample` (the velocity)."""

    def __init__(self, scheduler: FlowMatchScheduler, tokenizer: nn.Module | None = None, label_dropout: float = 0.1):
        super().__init__()
        self.scheduler = scheduler
        self.tokenizer = tokenizer.requires_grad_(False).eval() if tokenizer is not None else None
        self.label_dropout = label_dropout

    def noisy_inputs(self, model, batch, generator) -> dict:
        """The training example of one batch: clean latents `x`, noisy `x_t`, times `t`, (dropped) `labels` and the
        velocity `target`."""
        x = batch["pixel_values"]
        if self.tokenizer is not None:
            with torch.no_grad():
                x = self.tokenizer.encode(x)
        labels = drop_labels(batch["class_labels"], self.label_dropout, unwrap(model).config.num_classes, generator)
        t = self.scheduler.sample_t(x.shape[0], generator).to(x.device)
        noise = randn_like(x, generator)
        return {"x": x, "x_t": self.scheduler.add_noise(x, noise, t), "t": t, "labels": labels,
                "target": self.scheduler.velocity_target(x, noise).float()}

    def forward(self, model, batch, generator=None):
        ex = self.noisy_inputs(model, batch, generator)
        v = model(ex["x_t"], ex["t"], ex["labels"]).sample
        return {"loss": F.mse_loss(v.float(), ex["target"])}


class TokenizerObjective(nn.Module):
    """Trains an image tokenizer: its forward() is the training forward and returns its loss dict
    (reconstruction + KL or VQ terms). Calling through `model(...)` keeps DDP's gradient hooks in the path."""

    def forward(self, model, batch, generator=None):
        return model(batch["pixel_values"], generator=generator)


class ARTokensObjective(nn.Module):
    """ar_tokens: cross-entropy of a token AR model (ARModel, NARModel) on the VQ ids of the batch.

    The frozen VQ `tokenizer` encodes `batch[input_key]`: images (B, C, H, W) give (B, h*w) ids; clips
    (B, T, C, H, W) are coded frame by frame (per-frame 2-D VQ) and give (B, T*h*w) ids, frames in time order.
    Labels are replaced by the null class with probability `label_dropout` (CFG); the model gets the unshifted ids
    and returns (B, N, V) logits aligned with them (for NAR the mixed logits, so its heads are trained only
    through their average)."""

    def __init__(self, tokenizer: nn.Module, label_dropout: float = 0.1, input_key: str = "pixel_values"):
        super().__init__()
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.label_dropout = label_dropout
        self.input_key = input_key

    def forward(self, model, batch, generator=None):
        x = batch[self.input_key]
        with torch.no_grad():
            ids = self.tokenizer.encode(x.reshape(-1, *x.shape[-3:])).reshape(x.shape[0], -1)
        labels = drop_labels(batch["class_labels"], self.label_dropout, unwrap(model).config.num_classes, generator)
        logits = model(ids, labels)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids.reshape(-1))
        return {"loss": loss}


class MaskedTokensObjective(nn.Module):
    """masked_tokens: MAR / Hi-MAR training on a frozen continuous tokenizer's latents.

    The images are encoded (a posterior sample where the tokenizer has one, as MAR caches its latents) and cut into
    the model's tokens; the condition is dropped to the null one with probability `label_dropout` (CFG): class
    labels, or the captions' text-encoder states for a text-conditioned model. With `low_res` the 2x downsampled
    images are encoded too (Hi-MAR's low-resolution tokens). The model's forward returns the loss."""

    def __init__(self, tokenizer: nn.Module, label_dropout: float = 0.1, text_encoder: nn.Module | None = None,
                 low_res: bool = False):
        super().__init__()
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.text_encoder = text_encoder.requires_grad_(False).eval() if text_encoder is not None else None
        self.label_dropout = label_dropout
        self.low_res = low_res

    def encode(self, images, generator):
        return encode_latents(self.tokenizer, images, generator)

    def forward(self, model, batch, generator=None, step=None):
        bare = unwrap(model)
        images = batch["pixel_values"]
        with torch.no_grad():
            tokens = bare.tokens_from_latents(self.encode(images, generator))
            extra = {}
            if self.low_res:
                from ..models.himar import downsample_images

                extra = {"low_tokens": bare.tokens_from_low_latents(self.encode(downsample_images(images), generator)),
                         "step": step}
        drop = (torch.rand(tokens.shape[0], generator=generator) < self.label_dropout).to(tokens.device)
        if bare.conditioning == "class":
            labels = torch.where(drop, torch.full_like(batch["class_labels"], bare.null_class), batch["class_labels"])
            buffer = bare.condition(class_labels=labels)
        else:
            if self.text_encoder is None:
                raise GenlabError("a text-conditioned model trains with a text_encoder in its objective")
            text = self.text_encoder.encode(list(batch["caption"]))
            buffer = bare.condition(text=text.hidden_states.to(tokens.device),
                                    text_mask=text.attention_mask.to(tokens.device), drop=drop)
        out = model(tokens, buffer, generator, **extra)
        return {"loss": out.loss, **out.parts}
