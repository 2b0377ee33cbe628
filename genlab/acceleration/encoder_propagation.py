"""Faster Diffusion's encoder propagation as diffusers hooks on diffusers' own UNets.

The encoder of a UNet (conv_in, the 3-D UNet's transformer_in, every down block and the mid block) changes little
from one sampling step to the next; the decoder (up blocks, conv_out) changes a lot. So the encoder runs only at
key steps and its outputs (every skip tensor and the mid-block output) are cached; at the other steps only the
decoder runs, on the cache, with the current step's timestep embedding and condition. The current latent is then
not read at all, so the decoders of one key step's group need nothing but the cache: in parallel mode they run as
one batched forward at the key step, and the pipeline's later calls are served from it.

How it attaches, without touching the UNet's or the pipeline's code:

* a hook on each encoder stage (conv_in, transformer_in, down_blocks[i], mid_block) either runs it and keeps a copy
  of its output (key step), or returns the kept output without running (other steps);
* a hook on the UNet counts the calls, checks each against the scheduler's timesteps (one UNet call per step, CFG
  batched as diffusers' pipelines do), and in parallel mode makes the batched call;
* the scheduler's `set_timesteps` resets the state (every diffusers pipeline calls it first); with noise injection
  its `step` adds alpha * z_T to the latent it returns when the next step's t is below tau — the same latent the
  pipeline then feeds the UNet, which is the paper's z_t <- z_t + alpha z_T at the start of that step.

    apply_encoder_propagation(pipe, key_steps="50ls", parallel=True)
    images = pipe(...).images
    pipe.unet ... get_encoder_propagation(pipe).stats  # encoder/decoder calls and decoder batch sizes
    remove_encoder_propagation(pipe)

Works on `UNet2DModel`, `UNet2DConditionModel` and `UNet3DConditionModel` with any order-1 scheduler (DDIM, DDPM,
DPM-Solver++ multistep, ...); second-order single-step schedulers (Heun, KDPM2) call the UNet twice per step and are
refused. ControlNet / T2I-Adapter residuals are refused (they would have to be cached with the encoder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook

from ..errors import GenlabError
from .hooks import attach_hook, detach_hook, get_hook
from .key_steps import key_groups, resolve_key_steps, validate_key_steps

HOOK_NAME = "genlab_encoder_propagation"
STAGE_HOOK_NAME = "genlab_encoder_propagation_stage"
SUPPORTED_UNETS = ("UNet2DModel", "UNet2DConditionModel", "UNet3DConditionModel")
RESIDUAL_ARGUMENTS = ("down_block_additional_residuals", "mid_block_additional_residual",
                      "down_intrablock_additional_residuals")


@dataclass(frozen=True)
class NoiseInjection:
    """Prior noise injection: z_t <- z_t + alpha * z_T at every step whose timestep t (on the 1000-step training
    scale) is below tau. The paper's values: alpha 0.003 with tau 500 (SD), 300 (DiT), 150 (LDM)."""

    alpha: float = 0.003
    tau: float = 500.0

    def __post_init__(self):
        for name in ("alpha", "tau"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
                raise GenlabError(f"noise injection {name} must be a number >= 0, got {value!r}")


@dataclass
class EncoderPropagationConfig:
    """key_steps: a preset, an int m, 'uniform:m' or a list (genlab.acceleration.key_steps); parallel: batch the
    decoders of a key step's group into one forward; max_parallel: at most this many steps per batched decoder
    call (bounds memory; None = the whole group); noise_injection: None (off) or a NoiseInjection; record: keep a
    CPU copy of the mid-block output of every encoder run (the statistics of `statdp_key_steps`)."""

    key_steps: object = "50ls"
    parallel: bool = True
    max_parallel: int | None = None
    noise_injection: NoiseInjection | None = None
    record: bool = False

    def __post_init__(self):
        if not isinstance(self.parallel, bool):
            raise GenlabError(f"parallel must be True or False, got {self.parallel!r}")
        if self.max_parallel is not None and (isinstance(self.max_parallel, bool) or
                                              not isinstance(self.max_parallel, int) or self.max_parallel < 1):
            raise GenlabError(f"max_parallel must be an integer >= 1 or None, got {self.max_parallel!r}")
        if isinstance(self.noise_injection, dict):
            self.noise_injection = NoiseInjection(**self.noise_injection)
        if self.noise_injection is not None and not isinstance(self.noise_injection, NoiseInjection):
            raise GenlabError("noise_injection must be None, a NoiseInjection or a dict with alpha and tau")


@dataclass
class PropagationState:
    step: int = 0
    num_steps: int | None = None
    keys: frozenset = frozenset()
    groups: dict = field(default_factory=dict)   # key step -> the steps it serves
    pending: dict = field(default_factory=dict)  # step -> noise prediction computed by a batched decoder call
    mode: str = "plain"      # what the stage hooks do now: plain | record | replay
    expand: int = 1          # rows of the current call per row of the cache (parallel calls)
    z_T: torch.Tensor | None = None
    encoder_calls: int = 0
    decoder_calls: int = 0
    decoder_batch_sizes: list = field(default_factory=list)
    injected_steps: list = field(default_factory=list)
    recorded: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ tensor helpers
def _map_rows(value, rows: int, fn):
    """Apply fn to every tensor in value (tuples, lists, dicts) whose first dimension is `rows`."""
    if isinstance(value, torch.Tensor):
        return fn(value) if value.dim() > 0 and value.shape[0] == rows else value
    if isinstance(value, (tuple, list)):
        return type(value)(_map_rows(v, rows, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_rows(v, rows, fn) for k, v in value.items()}
    return value


def _copy(value):
    """A detached copy of a stage output: the decoder consumes the skip tuple and may write into tensors."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return value


def _repeat(value, times: int):
    if times == 1:
        return value
    if isinstance(value, torch.Tensor):
        return value.repeat(times, *([1] * (value.dim() - 1)))
    if isinstance(value, (tuple, list)):
        return type(value)(_repeat(v, times) for v in value)
    return value


def _first_tensor(args, kwargs):
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v
    return None


# ------------------------------------------------------------------------------------------------ hooks
class EncoderStageHook(ModelHook):
    """On one encoder stage: run and keep its output (record), return the kept output (replay), or pass through."""

    def __init__(self, owner: "EncoderPropagationHook", name: str):
        super().__init__()
        self.owner, self.name = owner, name
        self.cached = None

    def new_forward(self, module, *args, **kwargs):
        s = self.owner.state
        if s.mode == "replay":
            return _repeat(self.cached, s.expand)
        if s.mode != "record":
            return self.fn_ref.original_forward(*args, **kwargs)
        if s.expand > 1:  # a batched call: the first 1/expand of the rows are the key step's; run on those only
            first = _first_tensor(args, kwargs)
            rows = first.shape[0]
            keep = rows // s.expand
            args, kwargs = _map_rows((args, kwargs), rows, lambda t: t[:keep])
        out = self.fn_ref.original_forward(*args, **kwargs)
        self.cached = _copy(out)
        if self.name == "conv_in":
            s.encoder_calls += 1
        if self.name == "mid_block" and self.owner.config.record:
            s.recorded.append(out.detach().float().cpu())
        return _repeat(out, s.expand)


class EncoderPropagationHook(ModelHook):
    """On the UNet: which step this call is, whether its encoder runs, and the batched decoder call (parallel)."""

    _is_stateful = True

    def __init__(self, config: EncoderPropagationConfig, scheduler=None):
        super().__init__()
        self.config = config
        self.scheduler = scheduler
        self.state = PropagationState()

    # -- the run's step count and key steps
    def start(self, num_steps: int):
        keys = resolve_key_steps(self.config.key_steps, num_steps)
        self.state = PropagationState(num_steps=num_steps, keys=frozenset(keys),
                                      groups={g[0]: g for g in key_groups(keys, num_steps)})

    def reset_state(self, module):
        self.state = PropagationState()
        return module

    def _timesteps(self):
        return getattr(self.scheduler, "timesteps", None) if self.scheduler is not None else None

    def _check_call(self, timestep):
        s = self.state
        timesteps = self._timesteps()
        if s.num_steps is None:
            if timesteps is None:
                raise GenlabError("encoder propagation needs the scheduler's timesteps: apply it to the pipeline, or "
                                  "pass scheduler= with the UNet, and call scheduler.set_timesteps first")
            self.start(len(timesteps))
            s = self.state
        if s.step >= s.num_steps:
            raise GenlabError(f"the UNet was called more than the scheduler's {s.num_steps} steps; encoder "
                              "propagation needs one UNet call per step (CFG batched) and set_timesteps per run")
        if timesteps is not None:
            expected = float(timesteps[s.step])
            given = torch.as_tensor(timestep).flatten()
            if given.numel() and float(given[0]) != expected:
                raise GenlabError(f"UNet call {s.step} got timestep {float(given[0]):g} but the scheduler's step "
                                  f"{s.step} is {expected:g}: encoder propagation needs exactly one UNet call per "
                                  "scheduler step, in order")

    @staticmethod
    def _served(output_type, eps, return_dict):
        return output_type(sample=eps) if return_dict else (eps,)

    def new_forward(self, module, sample, timestep, *args, **kwargs):
        for name in RESIDUAL_ARGUMENTS:
            if kwargs.get(name) is not None:
                raise GenlabError(f"encoder propagation does not support {name} (ControlNet / T2I-Adapter "
                                  "residuals would have to be cached with the encoder)")
        self._check_call(timestep)
        s = self.state
        i = s.step
        return_dict = kwargs.pop("return_dict", True)
        try:
            if i in s.pending:  # served by the batched decoder call of this step's key step
                eps = s.pending.pop(i)
                return self._served(self._output_type, eps, return_dict)
            key = i in s.keys
            steps = [i]
            if self.config.parallel:  # this step and the rest of its key's group (a later chunk: max_parallel)
                group = next(g for g in s.groups.values() if g[0] <= i <= g[-1])
                steps = group[group.index(i):]
            if self.config.max_parallel is not None:
                steps = steps[:self.config.max_parallel]
            return self._run(module, sample, timestep, args, kwargs, steps, key, return_dict)
        finally:
            s.step += 1
            s.mode, s.expand = "plain", 1
            if s.step == s.num_steps:
                s.pending.clear()

    def _run(self, module, sample, timestep, args, kwargs, steps, key, return_dict):
        s = self.state
        S = len(steps)
        s.mode, s.expand = ("record" if key else "replay"), S
        if S == 1:  # the caller's own arguments: with every step a key this is the plain forward, bit for bit
            out = self.fn_ref.original_forward(sample, timestep, *args, return_dict=True, **kwargs)
        else:
            rows = sample.shape[0]
            timesteps = self._timesteps()
            t = torch.stack([torch.as_tensor(timesteps[j], device=sample.device) for j in steps])
            t = t.to(torch.as_tensor(timestep).dtype if torch.is_tensor(timestep) else t.dtype).repeat_interleave(rows)
            big_args, big_kwargs = _map_rows((args, kwargs), rows, lambda v: _repeat(v, S))
            out = self.fn_ref.original_forward(_repeat(sample, S), t, *big_args, return_dict=True, **big_kwargs)
        self._output_type = type(out)
        eps_all = out.sample
        s.decoder_calls += 1
        s.decoder_batch_sizes.append(eps_all.shape[0])
        rows = eps_all.shape[0] // S
        for j, step in enumerate(steps[1:], start=1):
            s.pending[step] = eps_all[j * rows:(j + 1) * rows]
        return self._served(self._output_type, eps_all[:rows], return_dict)

    @property
    def stats(self) -> dict:
        s = self.state
        return {"key_steps": sorted(s.keys), "encoder_calls": s.encoder_calls, "decoder_calls": s.decoder_calls,
                "decoder_batch_sizes": list(s.decoder_batch_sizes), "injected_steps": list(s.injected_steps)}


# ------------------------------------------------------------------------------------------------ apply / remove
def _encoder_stages(unet) -> list[tuple[str, torch.nn.Module]]:
    stages = [("conv_in", unet.conv_in)]
    if getattr(unet, "transformer_in", None) is not None:
        stages.append(("transformer_in", unet.transformer_in))
    stages += [(f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks)]
    if getattr(unet, "mid_block", None) is not None:
        stages.append(("mid_block", unet.mid_block))
    return stages


def _unet_and_scheduler(pipe_or_unet, scheduler):
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    if scheduler is None:
        scheduler = getattr(pipe_or_unet, "scheduler", None)
    if type(unet).__name__ not in SUPPORTED_UNETS:
        raise GenlabError(f"encoder propagation works on diffusers' {', '.join(SUPPORTED_UNETS)}, not "
                          f"{type(unet).__name__}")
    if scheduler is not None and getattr(scheduler, "order", 1) != 1:
        raise GenlabError(f"{type(scheduler).__name__} calls the model {scheduler.order} times per step, which "
                          "breaks the step-to-key mapping; use DDIM, DDPM or DPM-Solver++ (multistep)")
    return unet, scheduler


def _wrap_scheduler(scheduler, hook: EncoderPropagationHook):
    """set_timesteps resets the hook for a new run; step adds the prior noise injection."""
    original_set, original_step = scheduler.set_timesteps, scheduler.step

    @functools.wraps(original_set)
    def set_timesteps(*args, **kwargs):
        result = original_set(*args, **kwargs)
        hook.start(len(scheduler.timesteps))
        return result

    @functools.wraps(original_step)
    def step(model_output, timestep, sample, *args, **kwargs):
        s, inject = hook.state, hook.config.noise_injection
        if inject is None or inject.alpha == 0:
            return original_step(model_output, timestep, sample, *args, **kwargs)
        # the step this call closes: the UNet hook has already counted its call
        i = s.step - 1
        if i == 0 or s.z_T is None:
            s.z_T = sample.detach().clone()  # z_T after init_noise_sigma, before any injection (t_0 >= tau)
        out = original_step(model_output, timestep, sample, *args, **kwargs)
        timesteps = scheduler.timesteps
        if i + 1 < len(timesteps) and float(timesteps[i + 1]) < inject.tau:
            s.injected_steps.append(i + 1)
            if isinstance(out, tuple):
                return (out[0] + inject.alpha * s.z_T, *out[1:])
            return dataclasses.replace(out, prev_sample=out.prev_sample + inject.alpha * s.z_T)
        return out

    scheduler.set_timesteps, scheduler.step = set_timesteps, step
    scheduler._genlab_propagation_wrapped = True


def apply_encoder_propagation(pipe_or_unet, key_steps="50ls", parallel: bool = True, noise_injection=None,
                              max_parallel: int | None = None, scheduler=None, record: bool = False
                              ) -> EncoderPropagationHook:
    """Turn on encoder propagation for a pipeline (its `unet` and `scheduler`) or a UNet with `scheduler=`.
    Returns the hook; its `stats` count encoder and decoder calls of the last run."""
    unet, scheduler = _unet_and_scheduler(pipe_or_unet, scheduler)
    if parallel and scheduler is None:
        raise GenlabError("parallel encoder propagation needs the scheduler (the timesteps of the steps it batches): "
                          "apply it to the pipeline or pass scheduler=")
    config = EncoderPropagationConfig(key_steps=key_steps, parallel=parallel, max_parallel=max_parallel,
                                      noise_injection=noise_injection, record=record)
    validate_key_steps(key_steps)
    hook = attach_hook(unet, EncoderPropagationHook(config, scheduler), HOOK_NAME)
    for name, module in _encoder_stages(unet):
        HookRegistry.check_if_exists_or_initialize(module).register_hook(EncoderStageHook(hook, name),
                                                                          STAGE_HOOK_NAME)
    if scheduler is not None:
        if getattr(scheduler, "_genlab_propagation_wrapped", False):
            _unwrap_scheduler(scheduler)
        _wrap_scheduler(scheduler, hook)
    return hook


def _unwrap_scheduler(scheduler):
    for name in ("set_timesteps", "step"):
        scheduler.__dict__.pop(name, None)
    scheduler.__dict__.pop("_genlab_propagation_wrapped", None)


def remove_encoder_propagation(pipe_or_unet) -> None:
    unet = getattr(pipe_or_unet, "unet", pipe_or_unet)
    hook = get_hook(unet, HOOK_NAME)
    if hook is None:
        return
    for _, module in _encoder_stages(unet):
        detach_hook(module, STAGE_HOOK_NAME)
    detach_hook(unet, HOOK_NAME)
    if hook.scheduler is not None:
        _unwrap_scheduler(hook.scheduler)


def get_encoder_propagation(pipe_or_unet) -> EncoderPropagationHook | None:
    return get_hook(getattr(pipe_or_unet, "unet", pipe_or_unet), HOOK_NAME)


@contextlib.contextmanager
def encoder_propagation(pipe_or_unet, **kwargs):
    hook = apply_encoder_propagation(pipe_or_unet, **kwargs)
    try:
        yield hook
    finally:
        remove_encoder_propagation(pipe_or_unet)


# ------------------------------------------------------------------------------------------------ statdp
def encoder_feature_errors(features) -> torch.Tensor:
    """errors[i][j] = 1 - mean cosine similarity between the mid-block outputs of steps i and j (per position, over
    channels), from a run with every step a key. The cost the statistical DP minimises."""
    from .sharing import similarity_matrix

    tokens = [f.flatten(2).transpose(1, 2) if f.dim() >= 3 else f for f in features]  # (B, positions, C)
    return 1.0 - similarity_matrix(tokens)


def statdp_key_steps(pipe, num_key_steps: int, **call_kwargs) -> list[int]:
    """The K key steps chosen by the statistical DP (DDT's, genlab.acceleration.sharing.solve_statdp) from a
    template run of `pipe(**call_kwargs)` with the encoder at every step: reusing step a's encoder output at step b
    costs 1 - cos(mid_a, mid_b)."""
    from .sharing import solve_statdp

    if get_encoder_propagation(pipe) is not None:
        raise GenlabError("remove encoder propagation before the template run of statdp_key_steps")
    with encoder_propagation(pipe, key_steps="all", parallel=False, record=True) as hook:
        pipe(**call_kwargs)
        recorded = list(hook.state.recorded)
    if not recorded:
        raise GenlabError("the template run recorded no encoder features (does this UNet have a mid block?)")
    return solve_statdp(encoder_feature_errors(recorded), num_key_steps)
