"""Recipe builders: turn one recipe (data, tokenizer, model, objective, sampling settings) into what the Trainer
needs and what a finished run saves. A method registers its builder class under a recipe kind (genlab.registry);
`PipelineBuilder` holds everything the pipeline-producing kinds share, `TokenizerBuilder` trains a tokenizer.

Builders are imported when the registry is read (`genlab train --list`), so this module imports torch and the
models only inside the methods that need them.
"""

from __future__ import annotations

from ..errors import GenlabError
from .. import registry


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
    check_section_types("tokenizer", spec, cls)
    return cls.from_preset(preset, **spec) if preset else cls(**spec)


def seed_construction(recipe: dict) -> None:
    """Seed the global RNGs from the recipe's train.seed before anything is built, so that the initial weights (and
    every other draw while building) are the same in every process and every run: two runs of one recipe start
    from the same model, and a run killed before its first checkpoint restarts from it."""
    import random

    import numpy as np
    import torch

    from .trainer import derive_seed

    seed = (recipe.get("train") or {}).get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenlabError(f"train.seed must be an integer >= 0, got {seed!r}")
    value = derive_seed(seed, 2)  # stream 2: model construction (0: steps, 1: data order)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def check_section_types(section: str, spec: dict, cls) -> None:
    """A recipe entry (e.g. from `--set model.depth=abc`) whose type differs from the default's is a one-line
    error naming `section.key`, before the class is built."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    for key, value in spec.items():
        param = params.get(key)
        if param is None or param.default is inspect.Parameter.empty or param.default is None or value is None:
            continue
        default = param.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            continue
        if not ok:
            raise GenlabError(f"{section}.{key} must be {type(default).__name__} like its default {default!r}, "
                              f"got {value!r}")


def build_train_config(spec: dict):
    from .config import TrainConfig

    return TrainConfig.from_dict(spec or {})


class PipelineBuilder:
    """A model trained on a data set (through a tokenizer) and saved as a pipeline folder.

    A subclass names its registered `model_class`, `pipeline_class` and default `objective_type` (a recipe may pick
    another registered objective with `objective: {type: ...}`) and overrides the hooks `data_config`,
    `make_objective` and `pipeline_components` as its model family needs."""

    model_class: str = ""
    pipeline_class: str = ""
    objective_type: str = ""

    def __init__(self, recipe: dict):
        self.recipe = recipe
        seed_construction(recipe)
        self.dataset = build_dataset(recipe["data"])
        self.tokenizer = build_tokenizer(recipe.get("tokenizer"), self.dataset.channels)
        self.model = self.build_model(dict(recipe.get("model", {})))
        objective_spec = dict(recipe.get("objective", {}))
        objective_cls = registry.objective(objective_spec.pop("type", self.objective_type))
        self.objective = self.make_objective(objective_cls, objective_spec)
        self.sample_args = dict(recipe.get("sample", {}))

    # ------------------------------------------------------------ hooks a model family overrides
    def build_model(self, spec: dict):
        """The model of the recipe's model section: the registered `model_class`, from `preset` if one is named,
        with the entries fixed by the data and the conditioning."""
        preset = spec.pop("preset", None)
        model_cls = registry.export(self.model_class)
        check_section_types("model", spec, model_cls)
        spec.update(self.data_config(), **self.condition_config())
        return model_cls.from_preset(preset, **spec) if preset else model_cls(**spec)

    def data_config(self) -> dict:
        """Model config entries fixed by the data and the tokenizer."""
        return {}

    def condition_config(self) -> dict:
        """Model config entries of the conditioning: the data set's classes."""
        return dict(num_classes=self.dataset.num_classes, class_names=list(self.dataset.class_names))

    def make_objective(self, objective_cls, spec: dict):
        return objective_cls(**spec)

    def pipeline_components(self, model) -> dict:
        return dict(transformer=model, image_tokenizer=self.tokenizer)

    # ------------------------------------------------------------ shared
    def pipeline(self, model):
        return registry.export(self.pipeline_class)(**self.pipeline_components(model))

    def preview_inputs(self, pipe) -> dict:
        """The conditioning of the training previews: two samples of every class."""
        labels = [c for c in range(self.dataset.num_classes) for _ in range(2)]
        return {"class_labels": labels}

    def sample_fn(self, model, step):
        """A grid of previews (a clip per row for video pipelines), for the periodic training samples."""
        import torch

        from ..utils import image_grid

        pipe = self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        inputs = self.preview_inputs(pipe)
        out = pipe(generator=torch.Generator().manual_seed(0), **inputs, **self.sample_args)
        if hasattr(out, "frames"):
            return image_grid([frame for clip in out.frames for frame in clip], rows=len(out.frames))
        rows = self.dataset.num_classes if "class_labels" in inputs else None
        return image_grid(out.images, rows=rows)

    def save(self, model, output_dir: str):
        self.pipeline(model).save_pretrained(output_dir)


class TokenizerBuilder:
    """kind: tokenizer — trains an image tokenizer (kl or vq) and saves it with save_pretrained."""

    def __init__(self, recipe: dict):
        self.recipe = recipe
        seed_construction(recipe)
        self.dataset = build_dataset(recipe["data"])
        self.model = build_tokenizer(recipe.get("tokenizer"), self.dataset.channels)
        spec = dict(recipe.get("objective", {}))
        self.objective = registry.objective(spec.pop("type", "tokenizer"))(**spec)
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
