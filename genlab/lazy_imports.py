"""Package namespaces whose names are imported on first access, so that importing a package (and the CLI's
`--help`) does not load torch and every submodule."""

from __future__ import annotations

import importlib
import sys


def lazy_attributes(package: str, names: dict[str, str]):
    """(__getattr__, __dir__) for `package`: `names` maps an attribute to the submodule (relative, e.g. ".trainer")
    that defines it."""

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
