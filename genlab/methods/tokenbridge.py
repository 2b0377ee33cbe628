"""TokenBridge: post-training dimension-wise quantization of continuous tokens, MAR's backbone and a per-channel AR
head (baseline: MAR, the continuous-token masked AR with a diffusion head)."""

from ..registry import register_method
from .himar import MaskedARBuilder


class TokenBridgeBuilder(MaskedARBuilder):
    """kind: tokenbridge — a TokenBridgeModel on the patches of a continuous tokenizer's latents, saved as a
    TokenBridgePipeline. In the model section, `channel_order: frequency` computes the low-frequency-first order
    from the training tokens (`compute_channel_order`, `channel_cutoff`, default 0.25) and `value_range: fit` the
    symmetric range holding `range_coverage` (default 0.9999) of their values."""

    model_class = "TokenBridgeModel"
    pipeline_class = "TokenBridgePipeline"

    def build_model(self, spec: dict):
        order, cutoff = spec.get("channel_order"), spec.pop("channel_cutoff", 0.25)
        value_range, coverage = spec.get("value_range"), spec.pop("range_coverage", 0.9999)
        if order == "frequency" or value_range == "fit":
            maps = self.training_token_maps(spec)
            if order == "frequency":
                from ..tokenizers.dimwise_quant import compute_channel_order

                spec["channel_order"] = compute_channel_order(maps, cutoff)
            if value_range == "fit":
                from ..tokenizers.dimwise_quant import DimensionwiseQuantizer

                spec["value_range"] = list(DimensionwiseQuantizer.fit_range(maps, coverage))
        return super().build_model(spec)

    def training_token_maps(self, spec: dict):
        """(N, token_dim, h, w): the token channels of up to 1024 training images as maps over the token grid."""
        import torch

        from ..layers import patchify
        from ..training.objectives import encode_latents

        p = int(spec.get("patch_size", 1))
        with torch.no_grad():
            latents = encode_latents(self.tokenizer, self.dataset.images[:1024], torch.Generator().manual_seed(0))
        tokens = patchify(latents, p)  # (N, L, C p^2)
        side = latents.shape[-1] // p
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


register_method(
    "tokenbridge",
    description="TokenBridge (dimension-wise quantized MAR tokens, channel-AR head) against continuous-token MAR",
    components={"TokenBridgeModel": "genlab.models.tokenbridge",
                "DimensionwiseQuantizer": "genlab.tokenizers.dimwise_quant"},
    pipelines={"TokenBridgePipeline": "genlab.pipelines.mar"},
    recipe_kinds={"tokenbridge": TokenBridgeBuilder},
    benches={"tokenbridge": "genlab.eval.bench_tokenbridge:BENCH"},
)
