"""Recipes: one YAML file says how to build and train one shipped artefact (a pipeline or a tokenizer).

`genlab train dit-digits --output-dir pipelines/dit-digits` loads genlab/training/recipes/dit-digits.yaml, builds
data -> tokenizer -> model -> objective with the builder registered for the recipe's `kind` (genlab.registry;
builders in genlab/training/builders.py and each method's manifest), trains with the shared Trainer (checkpoints in
--run-dir, resumed automatically), and saves the EMA weights as a pipeline folder. A method's recipes live in the
folders it registers.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import yaml

from .. import registry
from ..errors import GenlabError, first_line



def recipe_files() -> dict[str, Path]:
    """name -> YAML file of every recipe in the registered recipe folders (the first folder wins a name)."""
    found = {}
    for folder in registry.recipe_dirs():
        for path in sorted(Path(folder).glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def list_recipes() -> list[str]:
    return sorted(recipe_files())


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict:
    """Read a shipped recipe by name or a YAML file by path, then apply `section.key=value` overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = recipe_files().get(name_or_path, path)
    if not path.is_file():
        raise GenlabError(f"unknown recipe {name_or_path!r}: not a file, and not one of {list_recipes()}")
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise GenlabError(f"recipe {path} is not valid YAML: {first_line(e)}") from None
    if not isinstance(recipe, dict) or "kind" not in recipe:
        raise GenlabError(f"recipe {path} must be a mapping with a 'kind' entry (one of {registry.recipe_kind_names()})")
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


def check_output_dir(output_dir: str, run_dir: str, overwrite: bool = False) -> None:
    """Refuse, before any training, to save over a folder that holds another trained model: a folder with a
    model_index.json or config.json is "this run's" only when its training_info.json names the same run folder
    (a resumed or repeated run re-saves its own output). `overwrite=True` allows it."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise GenlabError(f"--output-dir {output_dir} is a file, not a folder")
    holds_model = any(os.path.isfile(os.path.join(output_dir, f)) for f in ("model_index.json", "config.json"))
    if not holds_model or overwrite:
        return
    info_file = os.path.join(output_dir, "training_info.json")
    try:
        with open(info_file) as f:
            saved_run = json.load(f).get("run_dir")
    except (OSError, ValueError, AttributeError):
        saved_run = None
    if saved_run is None or os.path.abspath(saved_run) != os.path.abspath(run_dir):
        raise GenlabError(f"{output_dir} already holds a trained model from another run; pick another --output-dir, "
                          "or pass --overwrite to replace it")


def run_recipe(recipe: dict, output_dir: str, run_dir: str | None = None, resume: bool = True,
               accelerator=None) -> dict:
    """Build, train (resuming from run_dir's checkpoints) and save the EMA model to output_dir."""
    from ..modeling import count_parameters
    from .builders import build_train_config
    from .trainer import Trainer, fingerprint

    builder_cls = registry.recipe_kind(recipe["kind"])
    recipe = copy.deepcopy(recipe)
    builder = builder_cls(recipe)
    config = build_train_config(recipe.get("train", {}))
    run_dir = run_dir or os.path.join("runs", recipe["name"])
    trainer = Trainer(builder.model, builder.objective, builder.dataset, config, run_dir,
                      sample_fn=builder.sample_fn, accelerator=accelerator,
                      start_fingerprint=fingerprint(builder.model, getattr(builder, "tokenizer", None)))
    summary = trainer.train(resume=resume)
    if trainer.accelerator.is_main_process:
        model = trainer.ema_model()
        model.eval()
        builder.save(model, output_dir)
        info = {"recipe": recipe, "command": "genlab " + " ".join(sys.argv[1:]) if sys.argv else "",
                "dataset": recipe["data"].get("name"), "steps": summary.get("step"),
                "parameters": count_parameters(model), "sample": builder.sample_args,
                "baseline": recipe.get("baseline"), "run_dir": os.path.abspath(run_dir)}
        with open(os.path.join(output_dir, "training_info.json"), "w") as f:
            json.dump(info, f, indent=2)
    trainer.accelerator.wait_for_everyone()
    return summary
