"""DiT with flow matching: the class-conditional baseline of DDT (and of any flow-matching transformer)."""

from ..registry import register_method
from ..training.builders import PipelineBuilder


class FlowDiTBuilder(PipelineBuilder):
    """kind: flow_dit — a class-conditional DiT trained with flow matching, saved as a FlowDiTPipeline.
    Other flow-matching transformers subclass it and name their model and pipeline classes."""

    model_class = "DiTModel"
    pipeline_class = "FlowDiTPipeline"
    objective_type = "flow_matching"

    def data_config(self) -> dict:
        c, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        return dict(sample_size=h, in_channels=c)

    def make_objective(self, objective_cls, spec: dict):
        from ..schedulers import FlowMatchScheduler

        self.scheduler = FlowMatchScheduler(**self.recipe.get("scheduler", {}))
        return objective_cls(self.scheduler, self.tokenizer, **spec)

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model, scheduler=self.scheduler, image_tokenizer=self.tokenizer)


register_method(
    "dit",
    description="DiT (flow matching), the class-conditional diffusion transformer baseline",
    components={"DiTModel": "genlab.models.dit"},
    pipelines={"FlowDiTPipeline": "genlab.pipelines.dit_flow"},
    recipe_kinds={"flow_dit": FlowDiTBuilder},
    objectives={"flow_matching": "genlab.training.objectives:FlowMatchingObjective"},
)
