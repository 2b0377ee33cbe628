"""TokenBridge: post-training dimension-wise quantization of continuous tokens, MAR's backbone and a per-channel AR
head (baseline: MAR, the continuous-token masked AR with a diffusion head). The pipeline, recipe kind and bench
register here as they land."""

from ..registry import register_method

register_method(
    "tokenbridge",
    description="TokenBridge (dimension-wise quantized MAR tokens, channel-AR head) against continuous-token MAR",
    components={"TokenBridgeModel": "genlab.models.tokenbridge",
                "DimensionwiseQuantizer": "genlab.tokenizers.dimwise_quant"},
)
