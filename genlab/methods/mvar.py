"""M-VAR (intra-scale attention, Mamba-2 across scales) and its VAR baseline (block-causal next-scale prediction),
on VAR's multi-scale residual VQ tokenizer (a shared tokenizer: genlab.tokenizers.multiscale_vq)."""

from ..errors import GenlabError
from ..registry import register_method
from ..training.builders import PipelineBuilder


class NextScaleBuilder(PipelineBuilder):
    """kind: var — a VARModel on the id pyramid of a trained multi-scale VQ tokenizer (`tokenizer: {path: folder}`),
    trained with the next_scale cross-entropy, saved as a VARPipeline. patch_nums, vocab_size and latent_channels
    come from the tokenizer."""

    model_class = "VARModel"
    pipeline_class = "VARPipeline"
    objective_type = "next_scale"

    def data_config(self) -> dict:
        tok = self.tokenizer
        if not hasattr(tok, "next_scale_input"):
            raise GenlabError(f"recipe kind {self.recipe['kind']!r} needs a multi-scale VQ tokenizer "
                              f"(tokenizer: {{path: ...}} of a multiscale_vq folder), got {type(tok).__name__}")
        tok.latent_shape(self.dataset.image_size)  # the data's image size must be the tokenizer's
        return dict(patch_nums=list(tok.patch_nums), vocab_size=tok.codebook_size,
                    latent_channels=tok.latent_channels)

    def make_objective(self, objective_cls, spec: dict):
        return objective_cls(self.tokenizer, **spec)


class MVARBuilder(NextScaleBuilder):
    """kind: mvar — an MVARModel (block-diagonal attention + Mamba-2), saved as an MVARPipeline."""

    model_class = "MVARModel"
    pipeline_class = "MVARPipeline"


register_method(
    "mvar",
    description="M-VAR (intra-scale attention + Mamba-2 between scales) and its VAR baseline (block-causal attention)",
    components={"VARModel": "genlab.models.var", "MVARModel": "genlab.models.mvar"},
    pipelines={"VARPipeline": "genlab.pipelines.var", "MVARPipeline": "genlab.pipelines.var"},
    recipe_kinds={"var": NextScaleBuilder, "mvar": MVARBuilder},
    objectives={"next_scale": "genlab.training.next_scale:NextScaleObjective"},
    benches={"mvar": "genlab.eval.bench_mvar:BENCH"},
)
