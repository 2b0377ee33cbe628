"""M-VAR (intra-scale attention, Mamba-2 across scales) and its VAR baseline (block-causal next-scale prediction),
on VAR's multi-scale residual VQ tokenizer (a shared tokenizer: genlab.tokenizers.multiscale_vq)."""

from ..registry import register_method

register_method(
    "mvar",
    description="M-VAR (intra-scale attention + Mamba-2 between scales) and its VAR baseline (block-causal attention)",
    components={"VARModel": "genlab.models.var", "MVARModel": "genlab.models.mvar"},
)
