"""Feature reuse across sampling steps: which steps recompute an expensive branch, which reuse its cached output.

DDT's encoder sharing (the self-condition z is recomputed only at key steps Φ and reused in between) and Faster
Diffusion's encoder propagation are the same abstraction: a `ReusePolicy` says which of the N model evaluations
recompute the branch; the caller keeps the cache. Policies:

* `ReusePolicy.none()`        recompute at every step (Φ = 0..N-1);
* `ReusePolicy.uniform(r)`    Φ = {i : i mod r == 0}, i.e. ceil(N / r) recomputes (DDT's `state_refresh_rate`);
* `ReusePolicy.statdp(K)`     K key steps chosen by the "statistic DP" of DDT from a step-to-step error matrix
                              measured once on a full-recompute trajectory (`similarity_matrix`, `solve_statdp`);
* `ReusePolicy.explicit(Φ)`   a given list of key steps (e.g. a saved DP solution).

Note: the official DDT DP sampler derives K = floor(N / r) from a refresh rate r, while uniform
sharing recomputes ceil(N / r) times; the two differ by one whenever r does not divide N. `statdp_steps_for_rate`
uses ceil so that uniform and DP runs spend the same number of encoder calls; pass K = N // r to reproduce the
official sampler exactly.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import GenlabError, check_positive_int

POLICIES = ("none", "uniform", "statdp", "explicit")
#: The names a caller passes as `sharing=` (besides a ReusePolicy instance).
POLICY_NAMES = ("none", "uniform", "statdp")


def _positive_int(value, name: str) -> int:
    return check_positive_int(value, name, allow_integral_float=True)


@dataclass(frozen=True)
class ReusePolicy:
    """Which model evaluations recompute the shared branch. Build with the class methods, not the constructor."""

    kind: str = "none"
    rate: int | None = None            # uniform: refresh every `rate` steps
    num_steps: int | None = None       # statdp: K
    steps: tuple[int, ...] | None = None  # explicit key steps

    def __post_init__(self):
        if self.kind not in POLICIES:
            raise GenlabError(f"unknown sharing policy {self.kind!r}; choose from {list(POLICIES)}")

    @classmethod
    def none(cls) -> "ReusePolicy":
        return cls("none")

    @classmethod
    def uniform(cls, rate) -> "ReusePolicy":
        return cls("uniform", rate=_positive_int(rate, "the uniform refresh rate r"))

    @classmethod
    def statdp(cls, num_steps) -> "ReusePolicy":
        return cls("statdp", num_steps=_positive_int(num_steps, "the number of key steps K"))

    @classmethod
    def explicit(cls, steps) -> "ReusePolicy":
        steps = tuple(int(s) for s in steps)
        if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise GenlabError(f"explicit key steps must be strictly increasing and start at 0 (the branch must run "
                              f"before it can be reused), got {list(steps)}")
        return cls("explicit", steps=steps)

    @classmethod
    def from_name(cls, name: str, rate=None, num_steps=None) -> "ReusePolicy":
        """"none" | "uniform" (needs rate) | "statdp" (needs num_steps)."""
        if name == "none":
            return cls.none()
        if name == "uniform":
            if rate is None:
                raise GenlabError("uniform sharing needs a refresh rate r (an integer >= 1)")
            return cls.uniform(rate)
        if name == "statdp":
            if num_steps is None:
                raise GenlabError("statdp sharing needs the number of key steps K")
            return cls.statdp(num_steps)
        raise GenlabError(f"unknown sharing policy {name!r}; choose from {['none', 'uniform', 'statdp']}")

    @classmethod
    def from_arguments(cls, sharing, refresh_rate=None, num_steps=None, num_evaluations: int | None = None,
                       names: tuple[str, str] = ("refresh_rate", "num_encoder_steps")) -> "ReusePolicy":
        """A policy from a sampler's call arguments: `sharing` is a ReusePolicy or one of POLICY_NAMES; uniform
        takes the refresh rate r (recompute every r-th step; the share ratio is 1 - 1/r); statdp takes either the
        number of key steps K or r, meaning K = ceil(N / r), the budget of uniform(r). Every inconsistent
        combination is a GenlabError naming the arguments (`names`: how the caller calls r and K)."""
        rate_name, steps_name = names
        if isinstance(sharing, ReusePolicy):
            if refresh_rate is not None or num_steps is not None:
                raise GenlabError(f"pass {rate_name} / {steps_name} only with sharing='uniform' or 'statdp', "
                                  "not with a ReusePolicy")
            return sharing
        if sharing not in POLICY_NAMES:
            raise GenlabError(f"unknown sharing {sharing!r}; choose from {list(POLICY_NAMES)} or pass a ReusePolicy")
        if sharing == "none":
            if refresh_rate is not None or num_steps is not None:
                raise GenlabError(f"sharing='none' runs the encoder at every step; {rate_name} / {steps_name} "
                                  "need sharing='uniform' or 'statdp'")
            return cls.none()
        if isinstance(refresh_rate, float) and not refresh_rate.is_integer():
            raise GenlabError(f"{rate_name} is the refresh rate r, an integer >= 1 (the encoder runs every r-th "
                              f"step; the share ratio is 1 - 1/r), got {refresh_rate}")
        if sharing == "uniform":
            if num_steps is not None:
                raise GenlabError(f"uniform sharing is set by {rate_name} (refresh every r steps); "
                                  f"{steps_name} is for sharing='statdp'")
            return cls.from_name("uniform", rate=refresh_rate)
        if refresh_rate is not None and num_steps is not None:
            raise GenlabError(f"statdp sharing takes either {steps_name} (K) or {rate_name} (r), not both")
        if refresh_rate is not None:
            num_steps = statdp_steps_for_rate(num_evaluations, refresh_rate)
        policy = cls.from_name("statdp", num_steps=num_steps)
        if num_evaluations is not None and policy.num_steps > num_evaluations:
            raise GenlabError(f"{steps_name} K = {policy.num_steps} exceeds the {num_evaluations} model "
                              "evaluations of this run")
        return policy

    @property
    def needs_statistics(self) -> bool:
        return self.kind == "statdp"

    def num_recomputes(self, num_evaluations: int) -> int:
        """|Φ| for N evaluations (uniform: ceil(N / r))."""
        n = _positive_int(num_evaluations, "the number of steps N")
        if self.kind == "none":
            return n
        if self.kind == "uniform":
            return math.ceil(n / self.rate)
        if self.kind == "statdp":
            return self.num_steps
        return len(self.steps)

    def key_steps(self, num_evaluations: int, errors: torch.Tensor | None = None) -> list[int]:
        """Φ, sorted, for N evaluations. statdp needs the (N, N) error matrix 1 - similarity_matrix(zs) of a
        full-recompute run."""
        n = _positive_int(num_evaluations, "the number of steps N")
        if self.kind == "none":
            return list(range(n))
        if self.kind == "uniform":
            return list(range(0, n, self.rate))
        if self.kind == "explicit":
            if self.steps[-1] >= n:
                raise GenlabError(f"explicit key step {self.steps[-1]} is out of range for {n} steps")
            return list(self.steps)
        if errors is None:
            raise GenlabError("statdp needs the error matrix of a full-recompute run (see similarity_matrix)")
        if tuple(errors.shape) != (n, n):
            raise GenlabError(f"statdp error matrix must be ({n}, {n}), got {tuple(errors.shape)}")
        return solve_statdp(errors, self.num_steps)


def statdp_steps_for_rate(num_evaluations: int, rate) -> int:
    """K for a DP run comparable with uniform(r): ceil(N / r), the same number of recomputes (official: floor)."""
    return ReusePolicy.uniform(rate).num_recomputes(num_evaluations)


# ---------------------------------------------------------------- statistics and the dynamic program
def similarity_matrix(zs) -> torch.Tensor:
    """S[i][j] = mean over samples x tokens of cos(z_i, z_j) for N recorded features z_i of shape (B, T, D)
    (or (B, D)); each token is L2-normalised over its channels. Returns (N, N) float64."""
    if len(zs) == 0:
        raise GenlabError("similarity_matrix needs at least one recorded feature")
    shape = tuple(zs[0].shape)
    if any(tuple(z.shape) != shape for z in zs):
        raise GenlabError("all recorded features must have the same shape")
    flat = torch.stack([F.normalize(z.detach().to("cpu", torch.float64).reshape(-1, shape[-1]), dim=-1) for z in zs])
    rows = flat.shape[1]
    flat = flat.reshape(len(zs), -1)
    return flat @ flat.T / rows  # sum over (rows, channels) of products = sum over rows of cosines


def _as_error_matrix(errors) -> torch.Tensor:
    errors = torch.as_tensor(errors, dtype=torch.float64).cpu()
    if errors.dim() != 2 or errors.shape[0] != errors.shape[1]:
        raise GenlabError(f"the error matrix must be square (N, N), got {tuple(errors.shape)}")
    return errors


def segment_costs(errors) -> torch.Tensor:
    """seg[a][b + 1] = sum_{k=a+1..b} errors[k][a]: the cost of running the branch at step a and reusing it
    through step b. Returned as an (N, N + 1) matrix indexed by (start a, end-exclusive b + 1); entries with
    end <= start are +inf."""
    err = _as_error_matrix(errors)
    n = err.shape[0]
    prefix = torch.cat([torch.zeros(1, n, dtype=torch.float64), err.cumsum(0)])  # prefix[m][a] = sum_{k<m} err[k][a]
    cols = prefix.T  # cols[a][m]
    seg = cols - cols[torch.arange(n), torch.arange(n) + 1][:, None]  # subtract the part up to and including a
    ends = torch.arange(n + 1)[None, :]
    starts = torch.arange(n)[:, None]
    return seg.masked_fill(ends <= starts, float("inf"))


def schedule_cost(errors, steps) -> float:
    """Total cost of key steps Φ: each step i outside Φ pays errors[i][a] for the latest a in Φ before it."""
    err = _as_error_matrix(errors)
    steps = list(steps)
    bounds = steps[1:] + [err.shape[0]]
    return float(sum(err[a + 1:b, a].sum() for a, b in zip(steps, bounds)))


def solve_statdp(errors, num_steps) -> list[int]:
    """DDT's statistic DP: the K key steps (sorted, starting at 0) minimising `schedule_cost`. O(K N^2).

    C[k][i] = cheapest cover of steps 0..i-1 by k segments; C[1][i] = seg(0, i-1);
    C[k][i] = min_{k-1 <= j <= i-1} C[k-1][j] + seg(j, i-1); backtrack from (K, N)."""
    err = _as_error_matrix(errors)
    n = err.shape[0]
    k_total = _positive_int(num_steps, "the number of key steps K")
    if k_total > n:
        raise GenlabError(f"the number of key steps K = {k_total} exceeds the number of steps N = {n}")
    seg = segment_costs(err)  # (N, N + 1): seg[j][i] = cost of the segment starting at j and ending before i
    cost = torch.full((n + 1,), float("inf"), dtype=torch.float64)
    cost[1:] = seg[0, 1:]
    parents = []
    for k in range(2, k_total + 1):
        # candidates[j][i] = C[k-1][j] + seg(j, i-1); rows j < k-1 are +inf because C[k-1][j] is.
        candidates = cost[:n, None] + seg
        best, arg = candidates.min(dim=0)  # first minimum on ties: deterministic
        cost = torch.full_like(cost, float("inf"))
        cost[k:] = best[k:]
        parents.append(arg)
    steps, end = [], n
    for arg in reversed(parents):
        start = int(arg[end])
        steps.append(start)
        end = start
    return [0] + sorted(steps)


def brute_force_statdp(errors, num_steps) -> tuple[list[int], float]:
    """Reference for tests: the best Φ ∋ 0 of size K by enumeration, and its cost (exponential; N <= ~14)."""
    err = _as_error_matrix(errors)
    n = err.shape[0]
    best, best_cost = None, float("inf")
    for rest in itertools.combinations(range(1, n), num_steps - 1):
        steps = [0, *rest]
        c = schedule_cost(err, steps)
        if c < best_cost:
            best, best_cost = steps, c
    return best, best_cost
