"""Base class for every genlab model and tokenizer: diffusers' ModelMixin + ConfigMixin with clear load errors.

diffusers' own `from_pretrained` reports a truncated safetensors file, a missing folder or weights that do
not fit the config as long, low-level tracebacks. Every genlab component inherits from `GenlabModel`, so the
same one-line `GenlabError` reaches the user whether they call `Component.from_pretrained(path)` or
`DiffusionPipeline.from_pretrained(folder)` (which calls the component's classmethod).
"""

from __future__ import annotations

import inspect
import json
import os

from diffusers import ConfigMixin, ModelMixin

from . import diffusers_integration
from .errors import GenlabError, first_line
from .files import check_folder, read_json

diffusers_integration.register_library()  # components save as ["genlab", "<Class>"] in model_index.json

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def check_safetensors_file(path: str) -> None:
    """Raise GenlabError when ``path`` is not a complete safetensors file (e.g. truncated by a killed copy)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
            # Reading the last tensor touches the end of the data section, which a truncated file lacks.
            for k in keys[-1:]:
                f.get_tensor(k)
    except Exception as e:  # safetensors raises SafetensorError / OSError with terse messages
        raise GenlabError(f"corrupt or truncated weights file {path}: {first_line(e)}") from None
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        raise GenlabError(f"corrupt or truncated weights file {path}: expected {8 + header_len + end} bytes, found {size}")


class GenlabModel(ModelMixin, ConfigMixin):
    """ModelMixin + ConfigMixin whose `from_pretrained` checks the folder before diffusers reads it."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        path = str(pretrained_model_name_or_path)
        folder = os.path.join(path, kwargs["subfolder"]) if kwargs.get("subfolder") else path
        check_folder(folder, cls.__name__)
        cls.check_config_class(read_json(os.path.join(folder, "config.json"), cls.__name__), folder)
        weights = os.path.join(folder, WEIGHTS_NAME)
        if not os.path.isfile(weights):
            raise GenlabError(f"{cls.__name__}: missing weights file {weights}")
        check_safetensors_file(weights)
        cls.check_weights_match_config(folder, weights)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, GenlabError):
                raise
            raise GenlabError(f"{cls.__name__}: weights in {folder} do not match its config.json ({first_line(e)})") from None

    @classmethod
    def check_config_class(cls, config: dict, folder: str) -> None:
        """A folder saved by another class (a tokenizer swapped in for a model, say) is named as what it holds."""
        found = config.get("_class_name")
        if found is not None and found != cls.__name__ and not any(c.__name__ == found for c in cls.__mro__):
            raise GenlabError(f"{folder} holds a {found}, not a {cls.__name__}")

    @classmethod
    def check_weights_match_config(cls, folder: str, weights: str) -> None:
        """Compare tensor names and shapes in the weights file with the model config.json describes.

        diffusers only warns about missing keys and leaves those parameters uninitialised, so a config edited
        to a deeper model would silently sample garbage; here it is an error."""
        import torch

        # Config errors are GenlabErrors raised by the model's own checks; anything else is a bug and surfaces.
        with torch.device("meta"):
            model = cls.from_config(cls.load_config(folder))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        with open(weights, "rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        found = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if wrong:
                parts.append(f"{len(wrong)} of another shape (e.g. {wrong[0]}: file {found[wrong[0]]}, "
                             f"config {expected[wrong[0]]})")
            raise GenlabError(f"{cls.__name__}: weights in {folder} do not match its config.json: " + ", ".join(parts))

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)

    def _cached(self, key, fn):
        """A value derived from the config (masks, orders, tables), computed once per model. Kept outside the
        state dict on purpose: it is rebuilt from the config, not saved with the weights."""
        cache = self.__dict__.setdefault("_derived_cache", {})
        if key not in cache:
            cache[key] = fn()
        return cache[key]


def count_parameters(model) -> int:
    """Number of parameter elements of a module (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


class PresetMixin:
    """`from_preset(name, **overrides)`: build from a named configuration of `PRESETS` (name -> config overrides),
    any config field overridden. `PRESET_FAMILY` names the family in errors ("unknown DiT preset")."""

    PRESETS: dict[str, dict] = {}
    PRESET_FAMILY = ""

    @classmethod
    def from_preset(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            family = f"{cls.PRESET_FAMILY} " if cls.PRESET_FAMILY else ""
            raise GenlabError(f"{cls.__name__}: unknown {family}preset {name!r}; choose from {sorted(cls.PRESETS)}")
        config = {**cls.PRESETS[name], **overrides}
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise GenlabError(f"{cls.__name__}: unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**config)


class ClassConditionalMixin:
    """Models whose config has `num_classes` reserve the label id num_classes for "no class" (CFG)."""

    @property
    def null_class(self) -> int:
        """The label id meaning "no class" (classifier-free guidance): the last row of the label table."""
        return self.config.num_classes
