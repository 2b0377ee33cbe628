"""Recipes: one YAML file says how to build and train one shipped artefact (a pipeline or a tokenizer).

`genlab train dit-digits --output-dir pipelines/dit-digits` loads genlab/training/recipes/dit-digits.yaml, builds
data -> tokenizer -> model -> objective, trains with the shared Trainer (checkpoints in --run-dir, resumed
automatically), and saves the EMA weights as a pipeline folder. Methods add a builder to `BUILDERS`.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import yaml

from ..errors import GenlabError

RECIPE_DIR = Path(__file__).parent / "recipes"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict:
    """Read a shipped recipe by name or a YAML file by path, then apply `section.key=value` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise GenlabError(f"unknown recipe {name_or_path!r}: not a file, and not one of {list_recipes()}")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GenlabError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(recipe, dict) or "kind" not in recipe:
        raise GenlabError(f"recipe {path} must be a mapping with a 'kind' entry (one of {sorted(BUILDERS)})")
    recipe.setdefault("name", path.stem)
    for item in overrides or []:
        set_by_path(recipe, item)
    return recipe


def set_by_path(recipe: dict, assignment: str):
    """Apply 'train.steps=100' (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise GenlabError(f"override {assignment!r} must look like section.key=value")
    key, value = assignment.split("=", 1)
    node = recipe
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise GenlabError(f"override {assignment!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


# ---------------------------------------------------------------- building parts
def build_dataset(spec: dict):
    from ..data import load_dataset

    spec = dict(spec)
    name = spec.pop("name", None)
    if name is None:
        raise GenlabError("recipe data section needs a 'name' (fashion, digits, shapes or imagefolder)")
    return load_dataset(name, **spec)


def build_tokenizer(spec: dict | None, channels: int):
    """{type: pixels} | {type: kl|vq, preset: tiny, ...} (untrained) | {path: folder} (a trained tokenizer)."""
    from ..tokenizers import TOKENIZERS, load_tokenizer

    spec = dict(spec or {"type": "pixels"})
    if "path" in spec:
        return load_tokenizer(spec["path"])
    kind = spec.pop("type", "pixels")
    if kind not in TOKENIZERS:
        raise GenlabError(f"unknown tokenizer type {kind!r}; choose from {sorted(TOKENIZERS)}")
    cls = TOKENIZERS[kind]
    spec.setdefault("in_channels", channels)
    preset = spec.pop("preset", None)
    return cls.from_preset(preset, **spec) if preset else cls(**spec)


def build_train_config(spec: dict):
    from . import TrainConfig

    return TrainConfig.from_dict(spec or {})


# ---------------------------------------------------------------- builders
class FlowDiTBuilder:
    """kind: flow_dit — a class-conditional DiT trained with flow matching, saved as a FlowDiTPipeline.

    Subclasses for other flow-matching transformers only name their model and pipeline classes; other model
    families also override the hooks data_config, build_objective and pipeline_components."""

    model_class = "DiTModel"  # names in genlab.models / genlab.pipelines, resolved when a builder is made
    pipeline_class = "FlowDiTPipeline"

    def __init__(self, recipe: dict):
        from .. import models

        self.recipe = recipe
        self.dataset = build_dataset(recipe["data"])
        self.tokenizer = build_tokenizer(recipe.get("tokenizer"), self.dataset.channels)
        spec = dict(recipe.get("model", {}))
        preset = spec.pop("preset", None)
        spec.update(self.data_config(), num_classes=self.dataset.num_classes,
                    class_names=list(self.dataset.class_names))
        model_cls = getattr(models, self.model_class)
        self.model = model_cls.from_preset(preset, **spec) if preset else model_cls(**spec)
        self.objective = self.build_objective(dict(recipe.get("objective", {})))
        self.sample_args = dict(recipe.get("sample", {}))

    # The three hooks a builder for another model family overrides.
    def data_config(self) -> dict:
        """Model config entries fixed by the data and the tokenizer."""
        c, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        return dict(sample_size=h, in_channels=c)

    def build_objective(self, spec: dict):
        from ..schedulers import FlowMatchScheduler
        from .objectives import FlowMatchingObjective

        self.scheduler = FlowMatchScheduler(**self.recipe.get("scheduler", {}))
        return FlowMatchingObjective(self.scheduler, self.tokenizer, label_dropout=spec.get("label_dropout", 0.1))

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model, scheduler=self.scheduler, image_tokenizer=self.tokenizer)

    def pipeline(self, model):
        from .. import pipelines

        pipeline_cls = getattr(pipelines, self.pipeline_class)
        return pipeline_cls(**self.pipeline_components(model))

    def sample_fn(self, model, step):
        """A grid with two samples of every class, for the periodic training previews."""
        import torch

        from ..utils import image_grid

        pipe = self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        labels = [c for c in range(self.dataset.num_classes) for _ in range(2)]
        images = pipe(class_labels=labels, generator=torch.Generator().manual_seed(0), **self.sample_args).images
        return image_grid(images, rows=self.dataset.num_classes)

    def save(self, model, output_dir: str):
        self.pipeline(model).save_pretrained(output_dir)


class FlowDDTBuilder(FlowDiTBuilder):
    """kind: flow_ddt — a class-conditional DDT (condition encoder + velocity decoder) trained with flow matching,
    saved as a DDTPipeline. The recipe's `sample` section may set the sharing policy of the training previews.

    Optional REPA alignment of the encoder: `objective: {alignment: {teacher: {type: classifier, name: fashion}
    (or {type: dinov2, path: local folder}), layer: 2 (1-indexed encoder block), weight: 0.5}}`."""

    model_class = "DDTModel"
    pipeline_class = "DDTPipeline"

    def data_config(self) -> dict:
        config = super().data_config()
        alignment = self.recipe.get("objective", {}).get("alignment")
        if alignment:
            from .repa import load_teacher

            unknown = sorted(set(alignment) - {"teacher", "layer", "weight"})
            if unknown:
                raise GenlabError(f"objective.alignment: unknown entries {unknown} (teacher, layer, weight)")
            patch = self.recipe.get("model", {}).get("patch_size", 4)
            grid = (config["sample_size"] // patch,) * 2
            self.teacher = load_teacher(alignment.get("teacher", {}), grid)
            config.update(repa_layer=alignment.get("layer", 1), repa_dim=self.teacher.dim)
        return config

    def build_objective(self, spec: dict):
        objective = super().build_objective(spec)
        alignment = spec.get("alignment")
        if alignment:
            objective.teacher = self.teacher.eval().requires_grad_(False)
            objective.alignment_weight = float(alignment.get("weight", 0.5))
        return objective


class TokenARBuilder(FlowDiTBuilder):
    """kind: ar — a raster next-token ARModel (LlamaGen) on the ids of a trained VQ tokenizer
    (`tokenizer: {path: folder}`), trained with the ar_tokens cross-entropy, saved as an ARPipeline.
    The model's grid_size and vocab_size come from the tokenizer and the data's image size."""

    model_class = "ARModel"
    pipeline_class = "ARPipeline"

    def data_config(self) -> dict:
        if not getattr(self.tokenizer, "is_discrete", False):
            raise GenlabError(f"recipe kind {self.recipe['kind']!r} needs a VQ tokenizer (tokenizer: {{path: ...}} "
                              f"or {{type: vq}}), got {type(self.tokenizer).__name__}")
        _, h, w = self.tokenizer.latent_shape(self.dataset.image_size)
        if self.dataset.videos is not None:  # clips: a (T, h, w) grid of per-frame ids
            return dict(grid_size=[self.dataset.videos.shape[1], h, w], vocab_size=self.tokenizer.codebook_size)
        return dict(grid_size=[h, w], vocab_size=self.tokenizer.codebook_size)

    def build_objective(self, spec: dict):
        from .objectives import ARTokensObjective

        return ARTokensObjective(self.tokenizer, label_dropout=spec.get("label_dropout", 0.1))

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model, image_tokenizer=self.tokenizer)


class NARBuilder(TokenARBuilder):
    """kind: nar — NARModel (next-neighbour rings, dimension-oriented heads), saved as a NARPipeline, or as a
    NARVideoPipeline when the data are clips (`data: {name: shapes, video: true, num_frames: T}`)."""

    model_class = "NARModel"

    @property
    def pipeline_class(self) -> str:
        return "NARVideoPipeline" if self.dataset.videos is not None else "NARPipeline"

    def sample_fn(self, model, step):
        if self.dataset.videos is None:
            return super().sample_fn(model, step)
        import torch

        from ..utils import image_grid

        pipe = self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        labels = list(range(self.dataset.num_classes))
        clips = pipe(class_labels=labels, generator=torch.Generator().manual_seed(0), **self.sample_args).frames
        return image_grid([frame for clip in clips for frame in clip], rows=len(labels))  # one clip per row


class TokenizerBuilder:
    """kind: tokenizer — trains an image tokenizer (kl or vq) and saves it with save_pretrained."""

    def __init__(self, recipe: dict):
        from .objectives import TokenizerObjective

        self.recipe = recipe
        self.dataset = build_dataset(recipe["data"])
        self.model = build_tokenizer(recipe.get("tokenizer"), self.dataset.channels)
        self.objective = TokenizerObjective()
        self.sample_args = {}

    def sample_fn(self, model, step):
        import torch

        from ..utils import image_grid, tensor_to_pil

        images = self.dataset.images[:8].to(model.device)
        with torch.no_grad():
            recon = model.reconstruct(images)
        return image_grid(tensor_to_pil(torch.cat([images, recon.to(images.dtype)])), rows=2)

    def save(self, model, output_dir: str):
        if hasattr(model, "fit_scaling_factor"):
            model.fit_scaling_factor(self.dataset.images[:1024].to(model.device))
        model.save_pretrained(output_dir)


BUILDERS = {"flow_dit": FlowDiTBuilder, "flow_ddt": FlowDDTBuilder, "ar": TokenARBuilder, "nar": NARBuilder,
            "tokenizer": TokenizerBuilder}


def run_recipe(recipe: dict, output_dir: str, run_dir: str | None = None, resume: bool = True,
               accelerator=None) -> dict:
    """Build, train (resuming from run_dir's checkpoints) and save the EMA model to output_dir."""
    from . import Trainer

    kind = recipe["kind"]
    if kind not in BUILDERS:
        raise GenlabError(f"unknown recipe kind {kind!r}; choose from {sorted(BUILDERS)}")
    recipe = copy.deepcopy(recipe)
    builder = BUILDERS[kind](recipe)
    config = build_train_config(recipe.get("train", {}))
    run_dir = run_dir or os.path.join("runs", recipe["name"])
    trainer = Trainer(builder.model, builder.objective, builder.dataset, config, run_dir,
                      sample_fn=builder.sample_fn, accelerator=accelerator)
    summary = trainer.train(resume=resume)
    if trainer.accelerator.is_main_process:
        model = trainer.ema_model()
        model.eval()
        builder.save(model, output_dir)
        info = {"recipe": recipe, "command": "genlab " + " ".join(sys.argv[1:]) if sys.argv else "",
                "dataset": recipe["data"].get("name"), "steps": summary.get("step"),
                "parameters": sum(p.numel() for p in model.parameters()), "sample": builder.sample_args,
                "baseline": recipe.get("baseline")}
        with open(os.path.join(output_dir, "training_info.json"), "w") as f:
            json.dump(info, f, indent=2)
    trainer.accelerator.wait_for_everyone()
    return summary
