"""next_scale: VAR / M-VAR training on a frozen multi-scale VQ tokenizer (spec mvar.md §3).

The tokenizer turns the batch's images into the id pyramid (the targets, all L positions) and the teacher-forcing
inputs built from those ids; labels drop to the null class with probability `label_dropout` (which changes both
the start token and the adaLN condition, as in VAR); the loss is the mean token cross-entropy over every scale."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import drop_labels
from .objectives import unwrap


class NextScaleObjective(nn.Module):
    def __init__(self, tokenizer: nn.Module, label_dropout: float = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.label_dropout, self.label_smoothing = label_dropout, label_smoothing

    def forward(self, model, batch, generator=None):
        with torch.no_grad():
            idx_bl = self.tokenizer.img_to_idx_bl(batch["pixel_values"])
            var_input = self.tokenizer.idx_bl_to_var_input(idx_bl)
        target = torch.cat(idx_bl, 1)
        labels = drop_labels(batch["class_labels"], self.label_dropout, unwrap(model).config.num_classes, generator)
        logits = model(labels, var_input)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                               label_smoothing=self.label_smoothing)
        return {"loss": loss}
