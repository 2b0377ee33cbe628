"""What genlab's acceleration hooks share: attaching a diffusers `ModelHook` to an unmodified model, removing it,
and refusing to stack two feature-reuse tricks on one model (each would serve features the other never computed).

The hooks follow diffusers' `hooks/` shape: a config object, `apply_*` / `remove_*` functions (and a context
manager), a stateful `ModelHook` whose `reset_state` runs at the start of every sampling call.
"""

from __future__ import annotations

from diffusers.hooks import HookRegistry

from ..errors import GenlabError

#: Names (or name fragments) of hooks that reuse features across steps: diffusers' caches and genlab's tricks.
FEATURE_REUSE_HOOK_FRAGMENTS = ("cache", "fbc_", "broadcast", "taylorseer", "layer_skip", "genlab_")


def registered_hooks(model) -> list[str]:
    """Names of the diffusers hooks on `model` and its submodules."""
    names = []
    for _, module in model.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            names.extend(registry.hooks)
    return names


def attach_hook(model, hook, name: str):
    """Register `hook` on `model` under `name`, refusing when another feature-reuse hook is already there."""
    others = [n for n in registered_hooks(model) if any(f in n for f in FEATURE_REUSE_HOOK_FRAGMENTS)]
    if name in others:
        raise GenlabError(f"{type(model).__name__} already has the {name!r} hook; remove it before applying it again")
    if others:
        raise GenlabError(f"cannot apply {name!r} to {type(model).__name__}: it already has the feature-reuse "
                          f"hook(s) {sorted(set(others))}, and two caches on one model would serve each other "
                          "stale features; remove those first")
    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, name)
    return hook


def detach_hook(model, name: str) -> None:
    registry = getattr(model, "_diffusers_hook", None)
    if registry is not None:
        registry.remove_hook(name, recurse=False)


def get_hook(model, name: str):
    registry = getattr(model, "_diffusers_hook", None)
    return registry.get_hook(name) if registry is not None else None
