"""What the patch transformers (DiT, DDT) share besides their layers: config checks, the null class, the cached
2-D RoPE table and input checks, as a mixin so that each model stays one readable file."""

from __future__ import annotations

import torch

from ..errors import GenlabError
from ..layers import rope_frequencies
from ..modeling import ClassConditionalMixin, PresetMixin


def check_patch_transformer_config(sample_size: int, patch_size: int, hidden_size: int, num_heads: int,
                                   num_classes: int, class_names: list | None) -> None:
    """Config errors every patch transformer reports the same way (one-line GenlabError)."""
    if sample_size % patch_size:
        raise GenlabError(f"sample_size {sample_size} is not divisible by patch_size {patch_size}")
    if hidden_size % num_heads or (hidden_size // num_heads) % 4:
        raise GenlabError(f"head dim hidden_size/num_heads = {hidden_size}/{num_heads} must be an integer "
                          "divisible by 4 (2-D RoPE)")
    if class_names is not None and len(class_names) != num_classes:
        raise GenlabError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")


class PatchTransformerMixin(PresetMixin, ClassConditionalMixin):
    """Mixed into a GenlabModel whose config has sample_size, in_channels, patch_size, hidden_size, num_heads,
    num_classes, rope_theta and rope_span."""
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("AdaLNBlock",)

    def rope(self, grid_h: int, grid_w: int) -> torch.Tensor:
        # Cached per grid size, not a buffer: it is derived from the config and must not enter the state dict.
        cache = self.__dict__.setdefault("_rope_cache", {})
        key = (grid_h, grid_w)
        if key not in cache:
            head_dim = self.config.hidden_size // self.config.num_heads
            cache[key] = rope_frequencies((grid_h, grid_w), head_dim, self.config.rope_theta, self.config.rope_span)
        return cache[key]

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor):
        c, p = self.config.in_channels, self.config.patch_size
        if x.dim() != 4 or x.shape[1] != c or x.shape[2] % p or x.shape[3] % p:
            raise GenlabError(f"{type(self).__name__} expects x of shape (B, {c}, H, W) with H, W divisible by {p}; "
                              f"got {tuple(x.shape)}")
        if t.shape != (x.shape[0],) or class_labels.shape != (x.shape[0],):
            raise GenlabError(f"t and class_labels must have shape ({x.shape[0]},); got {tuple(t.shape)} and "
                              f"{tuple(class_labels.shape)}")
