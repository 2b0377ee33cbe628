"""Small CNN classifiers that genlab ships as its own feature nets for evaluation.

Inception weights cannot be downloaded at run time, so genlab scores generated images with a tiny classifier
trained on each data set (`python -m genlab.eval.train_classifier NAME`). Its penultimate features drive the
classifier Fréchet distance and its logits drive class accuracy of class-conditional samples.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import GenlabError
from ..modeling import GenlabModel

NETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nets")


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    # BatchNorm trains much faster than GroupNorm on a CPU budget; in eval mode it is a fixed affine map.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class FeatureClassifier(GenlabModel):
    """CNN classifier on images in [-1, 1] whose penultimate layer serves as a feature extractor.

    Each stage halves the resolution with a strided conv and refines with a second conv; global average pooling
    and a linear layer give ``feature_dim`` features (after ReLU), and a last linear layer the logits.
    Inputs of any spatial size are resized to ``image_size``; RGB inputs are averaged to gray for 1-channel nets.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        num_classes: int = 10,
        feature_dim: int = 128,
        widths: tuple = (32, 64, 128),
        dropout: float = 0.1,
    ):
        super().__init__()
        if in_channels not in (1, 3):
            raise GenlabError(f"FeatureClassifier: in_channels must be 1 or 3, got {in_channels}")
        widths = list(widths)
        if not widths:
            raise GenlabError("FeatureClassifier: widths must name at least one stage")
        # No full-resolution stem: the first conv already strides, which halves the training cost on a CPU
        # at no measurable accuracy cost on 16-32 px images.
        layers, c = [], in_channels
        for w in widths:
            layers += [_conv_block(c, w, 2), _conv_block(w, w, 1)]
            c = w
        self.body = nn.Sequential(*layers)
        self.to_features = nn.Linear(c, feature_dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` (B, C, H, W) and bring it to this net's channels and ``image_size``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GenlabError(f"FeatureClassifier expects images of shape (B, C, H, W), got {shape}")
        expected = self.config.in_channels
        if x.shape[1] != expected:
            if expected == 1 and x.shape[1] == 3:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise GenlabError(
                    f"FeatureClassifier expects {expected}-channel images (or RGB for a gray net), got {x.shape[1]}"
                )
        p = next(self.parameters())
        x = x.to(device=p.device, dtype=p.dtype)
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim), after the ReLU."""
        h = self.body(self.prepare(x)).mean(dim=(2, 3))
        return F.relu(self.to_features(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.drop(self.features(x)))


def available_classifiers() -> list[str]:
    """Names of the classifiers shipped in genlab/eval/nets/."""
    if not os.path.isdir(NETS_DIR):
        return []
    return sorted(d for d in os.listdir(NETS_DIR) if os.path.isfile(os.path.join(NETS_DIR, d, "config.json")))


def load_classifier(name: str) -> FeatureClassifier:
    """Load the shipped classifier for data set ``name`` (eval mode, gradients off)."""
    names = available_classifiers()
    if name not in names:
        raise GenlabError(f"no shipped classifier {name!r}; available: {', '.join(names) or 'none'}")
    model = FeatureClassifier.from_pretrained(os.path.join(NETS_DIR, name))
    model.eval().requires_grad_(False)
    return model
