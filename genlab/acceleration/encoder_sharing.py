"""DDT's encoder sharing as a diffusers hook on an unmodified DDTModel.

A DDTModel returns the self-condition z its encoder computed, and takes a z to skip the encoder. The hook turns a
plain sampling loop (one model call per evaluation) into a shared one: at the key steps it lets the encoder run and
keeps z; at every other call it passes the kept z, so only the decoder runs. It counts the calls (`stats`) and, for
a template run, can record every fresh z (the statistics of the statistical DP, `genlab.acceleration.sharing`).

    with encoder_sharing(model, EncoderSharingConfig(key_steps=[0, 4, 8])) as hook:
        ...  # the sampler's loop, unchanged
    hook.stats  # {"key_steps": [...], "encoder_calls": 3, "decoder_calls": N}

A z reused from an earlier step carries that step's t and label: that is the method as the official code runs it.
With `retime=True` the hook keeps the encoder state h_E instead and the model rebuilds z = SiLU(t_emb + h_E) with
the current t at each reuse. Why: the decoder sees t only through z, so a stale z tells it the noise level of the key
step; on fashion at N = 30, r = 4 that leaves residual noise in the black background ("speckle", 16x the unshared
samples' high-frequency energy), and re-timing cuts it by a third or more at no cost (bench/ddt.md, README).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from diffusers.hooks import ModelHook

from ..errors import GenlabError
from .hooks import attach_hook, detach_hook, get_hook

HOOK_NAME = "genlab_encoder_sharing"


@dataclass
class EncoderSharingConfig:
    """key_steps: the model evaluations (0-based, in call order) at which the encoder runs; must include 0.
    record: keep a CPU float copy of every freshly computed z (for the similarity statistics).
    retime: reuse the encoder state h_E and rebuild z with the current t (genlab's option), not the stale z."""

    key_steps: tuple[int, ...]
    record: bool = False
    retime: bool = False

    def __post_init__(self):
        self.key_steps = tuple(sorted(int(k) for k in self.key_steps))
        if not self.key_steps or self.key_steps[0] != 0:
            raise GenlabError("the key steps must include step 0: z does not exist before the first encoder call")


@dataclass
class SharingState:
    step: int = 0
    z: object = None  # what the next reuse passes back: z, or h_E when re-timing
    encoder_calls: int = 0
    decoder_calls: int = 0
    recorded: list = field(default_factory=list)


class EncoderSharingHook(ModelHook):
    _is_stateful = True

    def __init__(self, config: EncoderSharingConfig):
        super().__init__()
        self.config = config
        self._keys = set(config.key_steps)
        self.state = SharingState()

    def new_forward(self, module, x, t, class_labels, z=None, **kwargs):
        s = self.state
        fresh = s.step in self._keys or s.z is None
        reuse = {} if fresh else {"encoder_state" if self.config.retime else "z": s.z}
        out = self.fn_ref.original_forward(x, t, class_labels, **reuse, **kwargs)
        if fresh:
            s.encoder_calls += 1
            if self.config.record:
                s.recorded.append(out.z.detach().float().cpu())
        s.z, s.step = (out.encoder_state if self.config.retime else out.z), s.step + 1
        s.decoder_calls += 1
        return out

    def reset_state(self, module):
        self.state = SharingState()
        return module

    @property
    def stats(self) -> dict:
        return {"key_steps": list(self.config.key_steps), "encoder_calls": self.state.encoder_calls,
                "decoder_calls": self.state.decoder_calls, "retime": self.config.retime}


def apply_encoder_sharing(model, config: EncoderSharingConfig) -> EncoderSharingHook:
    """Attach encoder sharing to `model` (a DDTModel or any model with forward(x, t, labels, z=None) -> .z)."""
    return attach_hook(model, EncoderSharingHook(config), HOOK_NAME)


def remove_encoder_sharing(model) -> None:
    detach_hook(model, HOOK_NAME)


@contextlib.contextmanager
def encoder_sharing(model, config: EncoderSharingConfig):
    """Encoder sharing for the calls inside the block (state fresh at entry, hook removed at exit)."""
    hook = apply_encoder_sharing(model, config)
    try:
        yield hook
    finally:
        remove_encoder_sharing(model)


def active_encoder_sharing(model) -> EncoderSharingHook | None:
    return get_hook(model, HOOK_NAME)
