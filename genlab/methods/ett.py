"""ETT: a VQ tokenizer (IBQ quantizer) tuned end to end with a causal language model through its codebook
embeddings (baseline: the same LM on the frozen tokenizer). The bench registers here when it lands."""

from ..registry import register_method
from ..training.builders import PipelineBuilder


class ETTBuilder(PipelineBuilder):
    """kind: ett — an ETTModel and its image tokenizer trained as one ETTStack, saved as an ETTPipeline.

    `tokenizer: {path: ...}` is the pre-trained VQ tokenizer; `init: <pipeline folder>` starts from an earlier
    stage's pipeline instead (its tokenizer, LM and word tokenizer); `stage: 1 | 2 | 3` picks what trains (see
    genlab.training.ett); the word tokenizer is built from the training captions unless `init` brings one."""

    model_class = "ETTModel"
    pipeline_class = "ETTPipeline"
    objective_type = "ett"

    def __init__(self, recipe: dict):
        self.stage = recipe.get("stage", 1)
        super().__init__(recipe)

    def build_model(self, spec: dict):
        from ..errors import GenlabError
        from ..text_tokenizer import build_word_tokenizer
        from ..training.ett import ETTStack

        if self.dataset.captions is None:
            raise GenlabError(f"recipe kind 'ett' needs captions; the {self.dataset.name} data set has none here "
                              "(digits: data.captions: true)")
        init = self.recipe.get("init")
        if init:
            from ..pipelines.loading import load_pipeline

            pipe = load_pipeline(init)
            if type(pipe).__name__ != "ETTPipeline":
                raise GenlabError(f"init: {init} holds a {type(pipe).__name__}, not an ETTPipeline")
            if spec:
                raise GenlabError("a recipe with init: takes its model from that folder; leave out the model section")
            self.text_tokenizer, self.tokenizer, model = pipe.text_tokenizer, pipe.image_tokenizer, pipe.transformer
        else:
            self.text_tokenizer = build_word_tokenizer(self.dataset.captions)
            model = super().build_model(spec)
        return ETTStack(model, self.tokenizer, self.stage)

    def data_config(self) -> dict:
        from ..errors import GenlabError

        if not getattr(self.tokenizer, "is_discrete", False):
            raise GenlabError(f"recipe kind 'ett' needs a VQ tokenizer (tokenizer: {{path: ...}}), got "
                              f"{type(self.tokenizer).__name__}")
        _, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        return dict(text_vocab_size=len(self.text_tokenizer), codebook_size=self.tokenizer.codebook_size,
                    codebook_dim=self.tokenizer.latent_channels, grid_size=h)

    def condition_config(self) -> dict:
        return {}

    def make_objective(self, objective_cls, spec: dict):
        return objective_cls(self.text_tokenizer, self.stage, **spec)

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model.transformer, image_tokenizer=model.image_tokenizer,
                    text_tokenizer=self.text_tokenizer)

    def preview_inputs(self, pipe) -> dict:
        return {"prompt": list(self.dataset.captions[:8])}


register_method(
    "ett",
    description="ETT (tokenizer tuned end to end with a causal LM through the codebook embeddings) against the same "
                "LM on a frozen tokenizer",
    components={"ETTModel": "genlab.models.ett"},
    pipelines={"ETTPipeline": "genlab.pipelines.ett"},
    recipe_kinds={"ett": ETTBuilder},
    objectives={"ett": "genlab.training.ett:ETTObjective"},
    benches={"ett": "genlab.eval.bench_ett:BENCH"},
)
