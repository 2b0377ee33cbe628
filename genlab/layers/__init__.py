"""Layers shared by every genlab model. A layer never imports a model."""

from .attention import attention, attention_backend, xformers_available
from .blocks import (AdaLNBlock, FinalLayer, SelfAttention, SwiGLU, TransformerBlock, ViTBlock, modulate,
                     swiglu_hidden_size)
from .embeddings import LabelEmbedder, PatchEmbed, TimestepEmbedder, drop_labels, patchify, timestep_features, unpatchify
from .kv_cache import KVCache
from .rope import apply_rope, rope_frequencies, sequence_rope

__all__ = [
    "attention", "attention_backend", "xformers_available", "AdaLNBlock", "FinalLayer", "SelfAttention", "SwiGLU",
    "modulate", "swiglu_hidden_size", "LabelEmbedder", "PatchEmbed", "TimestepEmbedder", "drop_labels", "patchify",
    "timestep_features", "unpatchify", "apply_rope", "rope_frequencies", "TransformerBlock", "ViTBlock", "KVCache",
    "sequence_rope",
]
