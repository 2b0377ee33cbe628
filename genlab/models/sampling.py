"""One sampler for every order-based token model (raster AR, NAR, next-scale VAR / M-VAR; later ETT).

The model supplies `levels` (the raster indices produced per forward pass), `new_state(batch)` (its decoding state,
e.g. KV caches, a Mamba state or a transformers Cache: the sampler only carries it) and
`decode_step(tokens, positions, labels, state, targets) -> (B, t, V)` mixed logits. Step 0 feeds the class token
and predicts level 0; step k feeds the ids of level k-1 (written into the state at their sequence positions) and
predicts level k, so the number of forward passes equals the number of levels (raster: N; NAR: 2n - 1).

CFG runs the batch as [uncond ; cond] with the null class, combines the mixed logits of both halves with
`apply_cfg` at the scale `guidance(t)`, t = fraction of tokens generated before the step, and keeps running both
halves even where the scale is 1 so the unconditional cache stays in sync. Temperature (0 = greedy argmax),
top-k and top-p (HF-style) filter the combined logits; every position of a step is drawn at once with one
batched multinomial from `generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GenlabError, check_int, check_number
from ..schedulers import GuidanceSchedule, cfg_combine, cfg_labels


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """(..., V) logits -> temperature-scaled logits with everything outside top-k / the top-p nucleus at -inf."""
    logits = logits / max(float(temperature), 1e-5)
    v = logits.shape[-1]
    if top_k and 0 < top_k < v:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the first token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, t, V) -> (B, t) ids: argmax when temperature == 0, else filtered multinomial (one batched draw)."""
    if temperature == 0:
        return logits.argmax(-1)
    if isinstance(generator, list):  # one generator per sample (row), as diffusers' pipelines accept
        return torch.stack([sample_from_logits(logits[i:i + 1], temperature, top_k, top_p, g)[0]
                            for i, g in enumerate(generator)])
    probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    if generator is not None:
        flat = flat.to(generator.device)
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1]).to(logits.device)


def check_sampling_args(temperature, top_k, top_p):
    temperature = check_number(temperature, "temperature", minimum=0)
    check_int(top_k, "top_k", minimum=0)
    check_number(top_p, "top_p", minimum=0, maximum=1, strict_minimum=True)
    return temperature


@dataclass
class TokenSample:
    tokens: torch.Tensor  # (B, N) raster ids
    num_forward: int  # forward passes through the model (== number of levels)
    logits: torch.Tensor | None = None  # (B, N, V) combined (post-CFG, pre-filter) logits when requested


@torch.no_grad()
def generate_tokens(model, class_labels: torch.Tensor, guidance: GuidanceSchedule | float = 1.0,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                    generator: torch.Generator | None = None, return_logits: bool = False,
                    callback=None, progress=None, state_kwargs: dict | None = None) -> TokenSample:
    """Sample (B, N) token ids for class_labels (B,) with the model's own order.

    callback(step, level, tokens): called after every forward pass with the step index, the raster indices (n_k,)
    just sampled and the (B, N) ids so far (a copy; positions not yet sampled hold -1), e.g. to animate decoding.
    progress: wraps the iterable of levels (a pipeline's `progress_bar`).
    state_kwargs: passed to `model.new_state` (e.g. the tokenizer step a next-scale model needs).
    A model with `guidance_progress(step)` sets the t of each step's guidance itself (VAR: by scale index)."""
    check_sampling_args(temperature, top_k, top_p)
    if not isinstance(guidance, GuidanceSchedule):
        guidance = GuidanceSchedule(float(guidance))
    labels = class_labels.to(model.device).long().reshape(-1)
    B, N = labels.shape[0], model.num_tokens
    if B == 0 or int(labels.min()) < 0 or int(labels.max()) > model.config.num_classes:
        raise GenlabError(f"class_labels must be a non-empty list of ids in [0, {model.config.num_classes}] "
                          f"({model.config.num_classes} = no class: unconditional samples)")
    use_cfg = guidance.active
    if use_cfg:
        labels = cfg_labels(labels, model.null_class)
    state = model.new_state(labels.shape[0], **(state_kwargs or {}))
    progress_of = getattr(model, "guidance_progress", None)
    tokens = torch.zeros(B, N, dtype=torch.long, device=labels.device)
    all_logits = torch.zeros(B, N, model.config.vocab_size, device=labels.device) if return_logits else None
    filled = torch.zeros(N, dtype=torch.bool, device=labels.device)
    positions, inputs, done, calls = torch.zeros(1, dtype=torch.long), None, 0, 0
    levels = model.levels
    for level in (progress(levels) if progress is not None else levels):
        mixed = model.decode_step(inputs, positions, labels, state, level)
        calls += 1
        if use_cfg:
            if progress_of is not None and guidance.kind != "tokens":
                scale = guidance(progress_of(calls - 1))
            else:
                scale = guidance.at_tokens(done, N)
            mixed = cfg_combine(mixed, scale)
        new = sample_from_logits(mixed, temperature, top_k, top_p, generator)
        target = level.to(tokens.device)
        tokens[:, target] = new
        if return_logits:
            all_logits[:, target] = mixed.float()
        done += len(level)
        if callback is not None:
            filled[target] = True
            callback(calls - 1, level, torch.where(filled, tokens, torch.full_like(tokens, -1)))
        positions = 1 + level
        inputs = torch.cat([new, new]) if use_cfg else new
    return TokenSample(tokens, calls, all_logits)
