"""NAR: next-neighbour prediction in rings of equal Manhattan distance (baseline: raster next-token AR)."""

from ..errors import GenlabError
from ..registry import register_method
from ..training.builders import PipelineBuilder


class TokenARBuilder(PipelineBuilder):
    """kind: ar — a raster next-token ARModel (LlamaGen) on the ids of a trained VQ tokenizer
    (`tokenizer: {path: folder}`), trained with the ar_tokens cross-entropy, saved as an ARPipeline.
    The model's grid_size and vocab_size come from the tokenizer and the data: (h, w) for images, (T, h, w) of
    per-frame ids for clips (`data: {name: shapes, video: true, num_frames: T}`)."""

    model_class = "ARModel"
    pipeline_class = "ARPipeline"
    objective_type = "ar_tokens"

    def data_config(self) -> dict:
        if not getattr(self.tokenizer, "is_discrete", False):
            raise GenlabError(f"recipe kind {self.recipe['kind']!r} needs a VQ tokenizer (tokenizer: {{path: ...}} "
                              f"or {{type: vq}}), got {type(self.tokenizer).__name__}")
        _, h, w = self.tokenizer.latent_shape(self.dataset.image_size)
        frames = [self.dataset.videos.shape[1]] if self.dataset.videos is not None else []
        return dict(grid_size=[*frames, h, w], vocab_size=self.tokenizer.codebook_size)

    def make_objective(self, objective_cls, spec: dict):
        key = "video" if self.dataset.videos is not None else "pixel_values"
        return objective_cls(self.tokenizer, input_key=key, **spec)


class NARBuilder(TokenARBuilder):
    """kind: nar — NARModel (next-neighbour rings, dimension-oriented heads), saved as a NARPipeline, or as a
    NARVideoPipeline when the data are clips."""

    model_class = "NARModel"

    @property
    def pipeline_class(self) -> str:
        return "NARVideoPipeline" if self.dataset.videos is not None else "NARPipeline"

    def preview_inputs(self, pipe) -> dict:
        if self.dataset.videos is not None:  # one clip per class
            return {"class_labels": list(range(self.dataset.num_classes))}
        return super().preview_inputs(pipe)


register_method(
    "nar",
    description="NAR (next-neighbour rings, one head per dimension) and its raster next-token AR baseline",
    components={"ARModel": "genlab.models.ar", "NARModel": "genlab.models.nar"},
    pipelines={"ARPipeline": "genlab.pipelines.ar", "NARPipeline": "genlab.pipelines.nar",
               "NARVideoPipeline": "genlab.pipelines.nar_video"},
    recipe_kinds={"ar": TokenARBuilder, "nar": NARBuilder},
    objectives={"ar_tokens": "genlab.training.objectives:ARTokensObjective"},
    benches={"nar": "genlab.eval.bench_nar:BENCH"},
)
