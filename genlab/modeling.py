"""Base class for every genlab model and tokenizer: diffusers' ModelMixin + ConfigMixin with clear load errors.

diffusers' own `from_pretrained` reports a truncated safetensors file, a missing folder or weights that do
not fit the config as long, low-level tracebacks. Every genlab component inherits from `GenlabModel`, so the
same one-line `GenlabError` reaches the user whether they call `Component.from_pretrained(path)` or
`DiffusionPipeline.from_pretrained(folder)` (which calls the component's classmethod).
"""

from __future__ import annotations

import json
import os

from diffusers import ConfigMixin, ModelMixin

from .errors import GenlabError

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
        raise GenlabError(f"corrupt or truncated weights file {path}: {str(e).splitlines()[0]}") from None
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
        if not os.path.isdir(folder):
            raise GenlabError(f"{cls.__name__}: no such folder {folder}")
        config_file = os.path.join(folder, "config.json")
        if not os.path.isfile(config_file):
            raise GenlabError(f"{cls.__name__}: missing config.json in {folder}")
        try:
            with open(config_file) as f:
                json.load(f)
        except json.JSONDecodeError as e:
            raise GenlabError(f"{cls.__name__}: config.json in {folder} is not valid JSON ({e})") from None
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
            first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise GenlabError(
                f"{cls.__name__}: weights in {folder} do not match its config.json ({first.strip()[:300]})"
            ) from None

    @classmethod
    def check_weights_match_config(cls, folder: str, weights: str) -> None:
        """Compare tensor names and shapes in the weights file with the model config.json describes.

        diffusers only warns about missing keys and leaves those parameters uninitialised, so a config edited
        to a deeper model would silently sample garbage; here it is an error."""
        import torch

        try:
            with torch.device("meta"):
                model = cls.from_config(cls.load_config(folder))
        except GenlabError:
            raise
        except Exception as e:
            raise GenlabError(f"{cls.__name__}: config.json in {folder} is invalid ({str(e).splitlines()[0][:200]})") from None
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
        return sum(p.numel() for p in self.parameters())
