"""The one place where a method says what it brings.

A method calls `register_method` once, from a small manifest module (genlab's own live in `genlab/methods/`, listed
in `genlab/methods/__init__.py`; a plug-in is any importable module named in the `GENLAB_PLUGINS` environment
variable or in the `genlab.methods` entry-point group of an installed package):

    register_method(
        "ddt",
        components={"DDTModel": "genlab.models.ddt"},          # genlab.DDTModel, and loadable from model_index.json
        pipelines={"DDTPipeline": "genlab.pipelines.ddt"},     # resolvable by DiffusionPipeline.from_pretrained
        recipe_kinds={"flow_ddt": "genlab.methods.ddt:FlowDDTBuilder"},
        objectives={"flow_matching_repa": "genlab.training.repa:AlignedFlowMatchingObjective"},
        benches={"ddt": "genlab.eval.bench_ddt:BENCH"},
        recipes="path/to/recipe/folder",                       # optional: *.yaml recipes of the method
    )

A plug-in module that defines components must expose diffusers' `ModelMixin` and `SchedulerMixin` (e.g.
`from diffusers import ModelMixin, SchedulerMixin`): model_index.json names such a component by its module, and
diffusers picks the load method by looking those base classes up there (genlab's own components load as
["genlab", "<Class>"]).

A reference is either the object itself or a string: "package.module" (the attribute is the entry's name) or
"package.module:attribute". Strings are imported on first use, so registering costs nothing and `import genlab`,
`genlab --help` and `genlab train --list` stay fast. Shared code (CLI, trainer, demo, eval) looks methods up here
and has no per-method branches.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import GenlabError, first_line

PLUGINS_ENV = "GENLAB_PLUGINS"
ENTRY_POINT_GROUP = "genlab.methods"
KINDS = ("components", "pipelines", "recipe_kinds", "objectives", "benches")


@dataclass
class Method:
    """What one method registered: name -> reference, per kind, plus its recipe folders."""

    name: str
    components: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, Any] = field(default_factory=dict)
    recipe_kinds: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, Any] = field(default_factory=dict)
    benches: dict[str, Any] = field(default_factory=dict)
    recipe_dirs: list[str] = field(default_factory=list)
    description: str = ""


_METHODS: dict[str, Method] = {}
_RESOLVED: dict[tuple[str, str], Any] = {}
_state = {"loaded": False, "loading": False}


def _as_mapping(refs, kind: str) -> dict:
    if refs is None:
        return {}
    if isinstance(refs, dict):
        return dict(refs)
    out = {}
    for obj in refs:  # a list of objects: each is registered under its own __name__
        name = getattr(obj, "__name__", None)
        if not name:
            raise GenlabError(f"register_method: {kind} entries without a name need a mapping name -> object")
        out[name] = obj
    return out


def register_method(name: str, *, components=None, pipelines=None, recipe_kinds=None, objectives=None,
                    benches=None, recipes=None, description: str = "") -> Method:
    """Register (or extend) method `name`. Every name must be unique across methods within its kind."""
    if not isinstance(name, str) or not name:
        raise GenlabError(f"register_method needs a method name, got {name!r}")
    method = _METHODS.setdefault(name, Method(name, description=description))
    given = {"components": components, "pipelines": pipelines, "recipe_kinds": recipe_kinds,
             "objectives": objectives, "benches": benches}
    for kind, refs in given.items():
        for key, ref in _as_mapping(refs, kind).items():
            # components and pipelines share one namespace: both become genlab.<Name>
            shared = ("components", "pipelines") if kind in ("components", "pipelines") else (kind,)
            owner = next((m.name for m in _METHODS.values() if m is not method
                          and any(key in getattr(m, k) for k in shared)), None)
            if owner is not None:
                raise GenlabError(f"{kind[:-1].replace('_', ' ')} {key!r} of method {name!r} is already registered "
                                  f"by method {owner!r}")
            getattr(method, kind)[key] = ref
    for folder in [recipes] if isinstance(recipes, (str, os.PathLike)) else list(recipes or []):
        folder = os.fspath(folder)
        if folder not in method.recipe_dirs:
            method.recipe_dirs.append(folder)
    if description:
        method.description = description
    return method


# ---------------------------------------------------------------- loading the manifests
def ensure_loaded() -> None:
    """Import genlab's own manifests, then the plug-ins (once)."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        importlib.import_module("genlab.methods")
        for module in [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise GenlabError(f"{PLUGINS_ENV} names the module {module!r}, which cannot be imported "
                                  f"({first_line(e)})") from None
        for entry in _entry_points():
            try:
                entry.load()
            except Exception as e:  # noqa: BLE001  a broken plug-in must say which one it is
                raise GenlabError(f"the genlab plug-in {entry.name!r} ({entry.value}) fails to load: "
                                  f"{first_line(e)}") from None
        _state["loaded"] = True
    finally:
        _state["loading"] = False


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def methods() -> dict[str, Method]:
    ensure_loaded()
    return dict(_METHODS)


# ---------------------------------------------------------------- lookups
def resolve(ref, default_attr: str):
    """The object a reference names (see the module doc)."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr or default_attr)
    except (ImportError, AttributeError) as e:
        raise GenlabError(f"registered reference {ref!r} cannot be imported ({first_line(e)})") from None


def _lookup(kind: str, key: str):
    ensure_loaded()
    if (kind, key) not in _RESOLVED:
        for method in _METHODS.values():
            refs = getattr(method, kind)
            if key in refs:
                _RESOLVED[(kind, key)] = resolve(refs[key], key)
                break
        else:
            return None
    return _RESOLVED[(kind, key)]


def _names(kind: str) -> list[str]:
    ensure_loaded()
    return sorted(k for m in _METHODS.values() for k in getattr(m, kind))


def _get(kind: str, what: str, key: str):
    obj = _lookup(kind, key)
    if obj is None:
        raise GenlabError(f"unknown {what} {key!r}; choose from {_names(kind)}")
    return obj


def export(name: str):
    """A registered component or pipeline class by name (genlab.<Name>); AttributeError when unknown."""
    obj = _lookup("components", name)
    if obj is None:
        obj = _lookup("pipelines", name)
    if obj is None:
        raise AttributeError(f"module 'genlab' has no attribute {name!r}")
    return obj


def export_names() -> list[str]:
    return sorted(set(_names("components")) | set(_names("pipelines")))


def pipeline_class(name: str):
    """A registered pipeline class, or None."""
    return _lookup("pipelines", name)


def pipeline_names() -> list[str]:
    return _names("pipelines")


def pipeline_classes() -> list[type]:
    """Every registered pipeline class (imports their modules)."""
    return [_lookup("pipelines", n) for n in pipeline_names()]


def recipe_kind(kind: str):
    return _get("recipe_kinds", "recipe kind", kind)


def recipe_kind_names() -> list[str]:
    return _names("recipe_kinds")


def objective(name: str):
    return _get("objectives", "objective", name)


def bench(name: str):
    return _get("benches", "bench", name)


def bench_names() -> list[str]:
    return _names("benches")


def recipe_dirs() -> list[str]:
    ensure_loaded()
    return [d for m in _METHODS.values() for d in m.recipe_dirs]


def lazy_namespace(package: str):
    """(__getattr__, __dir__) for a package whose registered classes (those whose references point into it) are
    imported on first access, e.g. `from genlab.models import DDTModel`."""
    import sys

    def names() -> list[str]:
        ensure_loaded()
        out = []
        for m in _METHODS.values():
            for kind in ("components", "pipelines"):
                for key, ref in getattr(m, kind).items():
                    module = ref.partition(":")[0] if isinstance(ref, str) else getattr(ref, "__module__", "")
                    if module == package or module.startswith(package + "."):
                        out.append(key)
        return out

    def __getattr__(name):
        if name.startswith("_") or name not in names():
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = export(name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names()))

    return __getattr__, __dir__
