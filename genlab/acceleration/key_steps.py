"""Key steps of Faster Diffusion's encoder propagation: at which sampling steps the UNet encoder runs.

Step indices count sampling steps (0 = the first, noisiest one), never timestep values. A spec is one of

* a preset name: ``"50ls"`` (the paper's 50-step DDIM set, 9 keys), ``"100ls"`` (DeepFloyd-IF stage I, 100 steps),
  ``"pro"`` (keys where 9 + 8i is a perfect square: gaps grow by one, any N), ``"all"`` (every step: the plain
  sampler);
* an int m, ``"uniform:m"`` or ``ReusePolicy.uniform(m)``: every m-th step (ceil(N / m) keys);
* an explicit list, or ``ReusePolicy.explicit``: strictly increasing, starting at 0, inside 0..N-1.

The fixed presets are defined for one step count; used at another N they would silently become a different ratio
and a different placement of keys (spec pitfall 1), so that is an error. Key steps chosen by the statistical DP come
from a template run (`genlab.acceleration.encoder_propagation.statdp_key_steps`) and are passed as a list.
"""

from __future__ import annotations

import math

from ..errors import GenlabError
from .sharing import ReusePolicy

#: The fixed presets of the official code and the step count each is defined for.
FIXED_PRESETS = {
    "50ls": (50, [0, 1, 2, 3, 5, 10, 15, 25, 35]),
    "100ls": (100, [i for i in range(100) if i < 10 or i > 85 or i % 5 == 0]),
}
PRESETS = (*FIXED_PRESETS, "pro", "all")


def pro_key_steps(num_steps: int) -> list[int]:
    """i with 9 + 8i a perfect square: 0, 2, 5, 9, 14, 20, 27, 35, 44, ... below N."""
    return [i for i in range(num_steps) if math.isqrt(9 + 8 * i) ** 2 == 9 + 8 * i]


def check_key_steps(steps, num_steps: int | None) -> list[int]:
    """Validate an explicit list of key steps for N sampling steps (None: not known yet, the upper end is not
    checked); every problem is a one-line GenlabError."""
    try:
        values = [int(s) for s in steps]
    except (TypeError, ValueError):
        raise GenlabError(f"key steps must be integers (step indices), got {steps!r}") from None
    if any(isinstance(s, float) and not float(s).is_integer() for s in steps):
        raise GenlabError(f"key steps are step indices (integers), got {list(steps)}")
    if not values:
        raise GenlabError("the key steps are empty: step 0 must be a key (the encoder must run before its "
                          "features can be reused)")
    negative = [s for s in values if s < 0]
    if negative:
        raise GenlabError(f"key steps are step indices >= 0, got {negative}")
    bad = [s for s in values if num_steps is not None and s >= num_steps]
    if bad:
        raise GenlabError(f"key steps {bad} are out of range for {num_steps} sampling steps (0..{num_steps - 1})")
    if len(set(values)) != len(values):
        raise GenlabError(f"key steps must not repeat, got {values}")
    if values != sorted(values):
        raise GenlabError(f"key steps must be sorted in increasing order, got {values}")
    if values[0] != 0:
        raise GenlabError(f"the key steps must start at 0 (the encoder must run before its features can be "
                          f"reused), got {values}")
    return values


def resolve_key_steps(spec, num_steps: int) -> list[int]:
    """The sorted key steps of `spec` (see the module docstring) for N sampling steps."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise GenlabError(f"the number of sampling steps must be a positive integer, got {num_steps!r}")
    if isinstance(spec, ReusePolicy):
        if spec.kind == "statdp":
            raise GenlabError("statdp key steps come from a template run: pass "
                              "key_steps=statdp_key_steps(pipe, K, ...) (a list)")
        return check_key_steps(spec.key_steps(num_steps), num_steps)
    if isinstance(spec, bool):
        raise GenlabError(f"key_steps must be a preset {list(PRESETS)}, an int m, 'uniform:m' or a list, got {spec!r}")
    if isinstance(spec, int):
        return list(range(0, num_steps, ReusePolicy.uniform(spec).rate))
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in FIXED_PRESETS:
            n, steps = FIXED_PRESETS[name]
            if num_steps != n:
                raise GenlabError(f"key-step preset {name!r} is defined for {n} sampling steps, not {num_steps}; "
                                  f"use 'pro', a uniform m ('uniform:4') or an explicit list")
            return list(steps)
        if name == "pro":
            return pro_key_steps(num_steps)
        if name == "all":
            return list(range(num_steps))
        if name.startswith("uniform:"):
            try:
                m = int(name.split(":", 1)[1])
            except ValueError:
                raise GenlabError(f"'uniform:m' takes an integer m >= 1, got {spec!r}") from None
            return list(range(0, num_steps, ReusePolicy.uniform(m).rate))
        raise GenlabError(f"unknown key-step preset {spec!r}; choose from {list(PRESETS)}, 'uniform:m', an int m or "
                          "a list of step indices")
    if isinstance(spec, (list, tuple)):
        return check_key_steps(spec, num_steps)
    raise GenlabError(f"key_steps must be a preset {list(PRESETS)}, an int m, 'uniform:m' or a list, got "
                      f"{type(spec).__name__}")


def validate_key_steps(spec) -> None:
    """Check what can be checked before the step count is known (names, order, repeats, step 0); the range is
    checked when a run sets its timesteps."""
    if isinstance(spec, (list, tuple)):
        check_key_steps(spec, None)
    elif isinstance(spec, str) and spec.strip().lower() in FIXED_PRESETS:
        return
    else:
        resolve_key_steps(spec, 50)


def key_groups(key_steps: list[int], num_steps: int) -> list[list[int]]:
    """The steps each key step serves: [k, ..., next key - 1], in order; they partition 0..N-1."""
    bounds = [*key_steps[1:], num_steps]
    return [list(range(a, b)) for a, b in zip(key_steps, bounds)]
