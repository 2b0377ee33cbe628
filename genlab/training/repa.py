"""REPA-style representation alignment (Yu et al., 2024), as DDT trains its condition encoder.

The hidden state after encoder block `repa_layer` goes through the model's projector MLP and is pulled towards the
features a frozen teacher computes from the *clean* image, token by token: L_enc = mean over tokens of
(1 - cos(proj(h), r*)), added to the flow-matching loss with weight λ (0.5 in the paper). L_enc lies in [0, 2].

Teachers are pluggable: anything with `dim` and `patch_features(images (B, C, H, W) in [-1, 1], grid (h, w)) ->
(B, h*w, dim)`. Shipped:
- `ClassifierTeacher`: genlab's shipped digits/fashion/shapes feature CNN (the tiny-scale stand-in for DINOv2);
  its deepest feature map at least as large as the token grid, resampled to the grid.
- `DINOv2Teacher`: a DINOv2 model through `transformers`, loaded from a local folder only (nothing is downloaded);
  ImageNet-normalised RGB in [0, 1] at 14 px per token, final-LayerNorm'd patch tokens.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError, first_line
from .objectives import FlowMatchingObjective, unwrap


def _to_grid(fmap: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, C, h', w') feature map -> (B, h*w, C) tokens on the model's grid (bilinear when the sizes differ)."""
    if tuple(fmap.shape[-2:]) != tuple(grid):
        fmap = F.interpolate(fmap, size=grid, mode="bilinear", align_corners=False)
    return fmap.flatten(2).transpose(1, 2)


class ClassifierTeacher(nn.Module):
    """A frozen genlab FeatureClassifier's convolutional features as REPA targets: the output of its deepest layer
    whose feature map is still at least as large as the model's token grid (chosen once, so `dim` is fixed)."""

    def __init__(self, classifier: nn.Module, grid: tuple[int, int]):
        super().__init__()
        self.net = classifier.eval().requires_grad_(False)
        size = self.net.config.image_size
        with torch.no_grad():
            h = torch.zeros(1, self.net.config.in_channels, size, size)
            self.depth, self.dim = 1, None
            for i, layer in enumerate(self.net.body, start=1):
                h = layer(h)
                if self.dim is None or (h.shape[-2] >= grid[0] and h.shape[-1] >= grid[1]):
                    self.depth, self.dim = i, int(h.shape[1])

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h = self.net.prepare(images)
        for layer in list(self.net.body)[: self.depth]:
            h = layer(h)
        return _to_grid(h.float(), grid)


class DINOv2Teacher(nn.Module):
    """A frozen DINOv2 (transformers `Dinov2Model`) from a local folder: final-LayerNorm'd patch tokens."""

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, path: str):
        super().__init__()
        if not os.path.isdir(path):
            raise GenlabError(f"DINOv2 teacher: no local model folder at {path} (genlab never downloads weights; "
                              "save one with transformers' Dinov2Model.save_pretrained first)")
        from transformers import Dinov2Model

        try:
            self.net = Dinov2Model.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        except (OSError, ValueError) as e:
            raise GenlabError(f"DINOv2 teacher: cannot load {path}: {first_line(e)}") from None
        self.patch = int(self.net.config.patch_size)
        self.dim = int(self.net.config.hidden_size)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(grid[0] * self.patch, grid[1] * self.patch), mode="bicubic", align_corners=False)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        tokens = self.net(pixel_values=x).last_hidden_state[:, 1:]  # drop CLS; last_hidden_state is layernormed
        return tokens[:, -grid[0] * grid[1]:]  # drop register tokens if the model has any


def load_teacher(spec: dict, grid: tuple[int, int]) -> nn.Module:
    """{type: classifier, name: digits|fashion|shapes} or {type: dinov2, path: local folder}, for a token grid."""
    spec = dict(spec or {})
    kind = spec.pop("type", "classifier")
    if kind == "classifier":
        from ..eval import load_classifier

        if "name" not in spec:
            raise GenlabError("REPA classifier teacher needs a 'name' (digits, fashion or shapes)")
        return ClassifierTeacher(load_classifier(spec["name"]), grid)
    if kind == "dinov2":
        if "path" not in spec:
            raise GenlabError("REPA dinov2 teacher needs a local 'path'")
        return DINOv2Teacher(spec["path"])
    raise GenlabError(f"unknown REPA teacher type {kind!r}; choose 'classifier' or 'dinov2'")


def alignment_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(projected, target); both (B, N, C). Lies in [0, 2]."""
    if projected.shape != target.shape:
        raise GenlabError(f"REPA: projected features {tuple(projected.shape)} and teacher features "
                          f"{tuple(target.shape)} differ (token grids and repa_dim must match the teacher)")
    return (1 - F.cosine_similarity(projected.float(), target.float(), dim=-1)).mean()


class AlignedFlowMatchingObjective(FlowMatchingObjective):
    """flow_matching_repa: flow matching plus λ·L_enc, the alignment of the model's projected encoder features with
    the teacher's features of the clean image. The model (a DDTModel built with repa_layer / repa_dim) is called
    with return_alignment=True and returns them as `.aligned`. The loss dict also holds `loss_fm` and `loss_enc`."""

    def __init__(self, scheduler, tokenizer=None, label_dropout: float = 0.1, teacher: nn.Module | None = None,
                 alignment_weight: float = 0.5):
        super().__init__(scheduler, tokenizer, label_dropout)
        if teacher is None:
            raise GenlabError("flow_matching_repa needs a REPA teacher (objective.alignment.teacher in the recipe)")
        self.teacher = teacher.eval().requires_grad_(False)
        self.alignment_weight = float(alignment_weight)

    def forward(self, model, batch, generator=None):
        ex = self.noisy_inputs(model, batch, generator)
        out = model(ex["x_t"], ex["t"], ex["labels"], return_alignment=True)
        p = unwrap(model).config.patch_size
        grid = (ex["x"].shape[-2] // p, ex["x"].shape[-1] // p)
        loss_fm = F.mse_loss(out.sample.float(), ex["target"])
        # The teacher sees the clean data, not the latents.
        loss_enc = alignment_loss(out.aligned, self.teacher.patch_features(batch["pixel_values"], grid))
        return {"loss": loss_fm + self.alignment_weight * loss_enc, "loss_fm": loss_fm.detach(),
                "loss_enc": loss_enc.detach()}
