"""DDT: condition encoder + velocity decoder, encoder output shared between sampling steps (baseline: DiT)."""

from ..errors import GenlabError
from ..registry import register_method
from .dit import FlowDiTBuilder


class FlowDDTBuilder(FlowDiTBuilder):
    """kind: flow_ddt — a class-conditional DDT trained with flow matching, saved as a DDTPipeline. The recipe's
    `sample` section may set the sharing policy of the training previews.

    Optional REPA alignment of the encoder: `objective: {alignment: {teacher: {type: classifier, name: fashion}
    (or {type: dinov2, path: local folder}), layer: 2 (1-indexed encoder block), weight: 0.5}}`; the objective is
    then `flow_matching_repa`."""

    model_class = "DDTModel"
    pipeline_class = "DDTPipeline"

    def data_config(self) -> dict:
        config = super().data_config()
        self.alignment = self.recipe.get("objective", {}).get("alignment")
        if self.alignment:
            from ..training.repa import load_teacher

            unknown = sorted(set(self.alignment) - {"teacher", "layer", "weight"})
            if unknown:
                raise GenlabError(f"objective.alignment: unknown entries {unknown} (teacher, layer, weight)")
            patch = self.recipe.get("model", {}).get("patch_size", 4)
            grid = (config["sample_size"] // patch,) * 2
            self.teacher = load_teacher(self.alignment.get("teacher", {}), grid)
            config.update(repa_layer=self.alignment.get("layer", 1), repa_dim=self.teacher.dim)
        return config

    @property
    def objective_type(self) -> str:
        return "flow_matching_repa" if self.alignment else "flow_matching"

    def make_objective(self, objective_cls, spec: dict):
        spec = dict(spec)
        alignment = spec.pop("alignment", None)
        if alignment:
            spec.update(teacher=self.teacher, alignment_weight=float(alignment.get("weight", 0.5)))
        return super().make_objective(objective_cls, spec)


register_method(
    "ddt",
    description="DDT: decoupled condition encoder / velocity decoder with encoder sharing (statistical DP)",
    components={"DDTModel": "genlab.models.ddt"},
    pipelines={"DDTPipeline": "genlab.pipelines.ddt"},
    recipe_kinds={"flow_ddt": FlowDDTBuilder},
    objectives={"flow_matching_repa": "genlab.training.repa:AlignedFlowMatchingObjective"},
    benches={"ddt": "genlab.eval.bench_ddt:BENCH"},
)
