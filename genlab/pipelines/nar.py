"""NAR pipeline: the ARPipeline loop with a NARModel, one forward pass per ring of equal Manhattan distance
(2n - 1 passes for an n x n token grid: 15 for 8x8, 31 for 16x16)."""

from __future__ import annotations

from .ar import ARPipeline


class NARPipeline(ARPipeline):
    """Components: `transformer` (NARModel) and `image_tokenizer` (VQTokenizer). Same call signature as
    ARPipeline: class_labels, guidance_scale, guidance_interval, temperature, top_k, top_p, generator,
    output_type, return_dict."""
