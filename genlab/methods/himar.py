"""MAR and Hi-MAR: masked autoregression over continuous tokens with a diffusion head; Hi-MAR adds low-resolution
pivots and a Diffusion-Transformer head (baseline of Hi-MAR: MAR)."""

from ..registry import register_method
from ..training.builders import PipelineBuilder


class MaskedARBuilder(PipelineBuilder):
    """kind: mar — a MARModel on the patches of a continuous tokenizer's latents (`tokenizer: {type: pixels}` or a
    trained kl folder), saved as a MARPipeline. `conditioning: text` makes it text-conditioned on the captions
    through the MiniLM text encoder (shipped in the pipeline as a config-only component)."""

    model_class = "MARModel"
    pipeline_class = "MARPipeline"
    objective_type = "masked_tokens"

    @property
    def text(self) -> bool:
        return self.recipe.get("conditioning", "class") == "text"

    def data_config(self) -> dict:
        from ..errors import GenlabError

        if getattr(self.tokenizer, "is_discrete", False):
            raise GenlabError(f"recipe kind {self.recipe['kind']!r} needs a continuous tokenizer (pixels or kl), got "
                              f"{type(self.tokenizer).__name__}")
        c, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        config = dict(sample_size=h, in_channels=c)
        self.text_encoder = None
        if self.text:
            from ..text_encoder import MiniLMTextEncoder

            if self.dataset.captions is None:
                raise GenlabError(f"conditioning: text needs captions; the {self.dataset.name} data set has none")
            self.text_encoder = MiniLMTextEncoder()
            config["text_dim"] = self.text_encoder.hidden_size
        return config

    def make_objective(self, objective_cls, spec: dict):
        return objective_cls(self.tokenizer, text_encoder=self.text_encoder, low_res=self.low_res, **spec)

    @property
    def low_res(self) -> bool:
        return False

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model, image_tokenizer=self.tokenizer, text_encoder=self.text_encoder)

    def preview_inputs(self, pipe) -> dict:
        if self.text:
            return {"prompt": list(self.dataset.captions[:8])}
        return super().preview_inputs(pipe)


class HiMARBuilder(MaskedARBuilder):
    """kind: himar — a HiMARModel (low-res pivots, DiT head), saved as a HiMARPipeline; trains on the images and
    their 2x downsampled versions through the same tokenizer."""

    model_class = "HiMARModel"
    pipeline_class = "HiMARPipeline"

    @property
    def low_res(self) -> bool:
        return self.recipe.get("model", {}).get("pivots", True)


register_method(
    "himar",
    description="MAR (masked AR over continuous tokens, MLP diffusion head) and Hi-MAR (low-res pivots, DiT head)",
    components={"MARModel": "genlab.models.mar", "HiMARModel": "genlab.models.himar"},
    pipelines={"MARPipeline": "genlab.pipelines.mar", "HiMARPipeline": "genlab.pipelines.mar"},
    recipe_kinds={"mar": MaskedARBuilder, "himar": HiMARBuilder},
    objectives={"masked_tokens": "genlab.training.objectives:MaskedTokensObjective"},
    benches={"himar": "genlab.eval.bench_himar:BENCH"},
)
