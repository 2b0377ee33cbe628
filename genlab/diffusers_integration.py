"""How diffusers finds genlab's classes, without `import genlab` importing diffusers (or torch).

* Pipelines: `DiffusionPipeline.from_pretrained(folder)` resolves model_index.json's `_class_name` as an attribute of
  the `diffusers` module. `install()` gives that module a fallback attribute lookup into `genlab.registry`, so a
  registered pipeline class is imported the first time diffusers asks for it. When diffusers is not imported yet, a
  one-shot import hook adds the fallback right after diffusers' own `__init__` has run.
* Components: model_index.json records them as ["genlab", "DDTModel"]; `register_library()` makes "genlab" a library
  diffusers knows how to save and load (like "transformers"), resolved as attributes of the `genlab` package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

LIBRARY = "genlab"


def register_library() -> None:
    """Add "genlab" to diffusers' loadable libraries (components are ModelMixin / SchedulerMixin subclasses)."""
    from diffusers.pipelines import pipeline_loading_utils

    pipeline_loading_utils.LOADABLE_CLASSES.setdefault(LIBRARY, {
        "ModelMixin": ["save_pretrained", "from_pretrained"],
        "SchedulerMixin": ["save_pretrained", "from_pretrained"],
    })
    pipeline_loading_utils.ALL_IMPORTABLE_CLASSES.update(pipeline_loading_utils.LOADABLE_CLASSES[LIBRARY])


def _with_genlab_fallback(base: type) -> type:
    if getattr(base, "_genlab_fallback", False):
        return base

    class DiffusersModuleWithGenlab(base):
        _genlab_fallback = True

        def __getattr__(self, name):
            parent = getattr(base, "__getattr__", None)
            if parent is not None:
                try:
                    return parent(self, name)
                except AttributeError:
                    pass
            if not name.startswith("_"):
                from . import registry

                cls = registry.pipeline_class(name)
                if cls is not None:
                    setattr(self, name, cls)
                    return cls
            raise AttributeError(f"module 'diffusers' has no attribute {name!r}")

    DiffusersModuleWithGenlab.__name__ = base.__name__
    return DiffusersModuleWithGenlab


def _patch(module) -> None:
    module.__class__ = _with_genlab_fallback(type(module))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of `diffusers` so the fallback is added once it has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "diffusers":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("diffusers")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(sys.modules.get("diffusers", module))  # diffusers replaces itself by a lazy module

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    module = sys.modules.get("diffusers")
    if module is not None:
        _patch(module)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
