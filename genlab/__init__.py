"""genlab: Diffusers-style generative image and video pipelines on shared components.

`import genlab` is cheap (no torch, no diffusers): every class is imported on first use. It makes diffusers find
genlab's pipeline classes (`DiffusionPipeline.from_pretrained(folder)` then loads a genlab folder with no other
argument) and exposes every registered component and pipeline as `genlab.<Name>`; see `genlab.registry` for how a
method registers what it brings and `genlab.diffusers_integration` for the diffusers side.
"""

from . import diffusers_integration, registry
from .errors import GenlabError

__version__ = "0.1.0"

# diffusers looks these up on a component's library ("genlab") to pick its save/load methods.
_FROM_DIFFUSERS = ("ModelMixin", "SchedulerMixin")

diffusers_integration.install()


def __getattr__(name):
    if name in _FROM_DIFFUSERS:
        import diffusers

        value = getattr(diffusers, name)
    elif name.startswith("_"):
        raise AttributeError(f"module 'genlab' has no attribute {name!r}")
    else:
        value = registry.export(name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(registry.export_names()) | set(_FROM_DIFFUSERS))


__all__ = ["GenlabError", "registry", "__version__"]
