"""genlab: Diffusers-style generative image and video pipelines on shared components.

`import genlab` registers genlab's pipeline classes on the `diffusers` module, because
`DiffusionPipeline.from_pretrained(folder)` resolves model_index.json's `_class_name` there. Component classes
(models, tokenizers, schedulers) are looked up as attributes of `genlab` (model_index.json names the library
"genlab"), which this module provides lazily so that importing genlab stays fast.
"""

import importlib

import diffusers
from diffusers import ModelMixin, SchedulerMixin  # diffusers looks these up on a library to pick its load method

from .errors import GenlabError
from .pipelines import PIPELINES

__version__ = "0.1.0"

for _cls in PIPELINES:
    setattr(diffusers, _cls.__name__, _cls)

# Make "genlab" a library diffusers knows how to save and load (like "transformers"), so model_index.json records
# components as ["genlab", "DiTModel"] rather than the defining submodule's path, and loading resolves them as
# attributes of `genlab`. Components are diffusers ModelMixin / SchedulerMixin subclasses.
_loading = diffusers.pipelines.pipeline_loading_utils
_loading.LOADABLE_CLASSES.setdefault("genlab", {
    "ModelMixin": ["save_pretrained", "from_pretrained"],
    "SchedulerMixin": ["save_pretrained", "from_pretrained"],
})

# attribute -> submodule that defines it (resolved on first access)
_LAZY = {
    "DiTModel": "genlab.models",
    "DDTModel": "genlab.models",
    "ARModel": "genlab.models",
    "NARModel": "genlab.models",
    "ReusePolicy": "genlab.acceleration",
    "FlowMatchScheduler": "genlab.schedulers",
    "GuidanceSchedule": "genlab.schedulers",
    "PixelTokenizer": "genlab.tokenizers",
    "KLTokenizer": "genlab.tokenizers",
    "VQTokenizer": "genlab.tokenizers",
    "FeatureClassifier": "genlab.eval",
    "load_dataset": "genlab.data",
    "Trainer": "genlab.training",
    "TrainConfig": "genlab.training",
}
for _cls in PIPELINES:
    _LAZY[_cls.__name__] = "genlab.pipelines"


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["GenlabError", "ModelMixin", "SchedulerMixin", "__version__", *_LAZY]
