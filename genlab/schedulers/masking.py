"""Masked-generation schedules (MAR, Hi-MAR, TokenBridge): random orders, training mask ratios and the cosine
reveal schedule of iterative decoding. Everything draws from an explicit torch.Generator.

* `random_orders(B, N, g)`: one random permutation of the N positions per sample.
* `truncnorm_ratio(g)`: MAR's training mask ratio, a truncated normal (mean 1, std 0.25) on [0.7, 1], by inverse CDF.
* `cosine_ratio(g)`: MaskGIT's cos(pi/2 u), u ~ U[0, 1].
* `reveal_counts(N, K)`: how many tokens each of K sampling steps reveals: before step k, m tokens are masked;
  next = max(1, min(m - 1, floor(N cos(pi/2 (k + 1) / K)))) stay masked, the last step reveals the rest. Every step
  reveals >= 1 token and the counts sum to N (64 over 4 -> [5, 14, 21, 24]).
* `mask_from_order(orders, n)`: the first n positions of each order, as a (B, N) bool mask.
"""

from __future__ import annotations

import math

import torch

from ..errors import GenlabError, check_positive_int


def random_orders(batch_size: int, num_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N) long: row b is a random permutation of 0..N-1."""
    return torch.argsort(torch.rand(batch_size, num_tokens, generator=generator), dim=1)


def truncnorm_ratio(generator: torch.Generator | None = None, mean: float = 1.0, std: float = 0.25,
                    low: float = 0.7, high: float = 1.0) -> float:
    """One draw of a normal(mean, std) truncated to [low, high], by inverse CDF (torch.special.ndtri)."""
    a = torch.special.ndtr(torch.tensor((low - mean) / std, dtype=torch.float64))
    b = torch.special.ndtr(torch.tensor((high - mean) / std, dtype=torch.float64))
    u = torch.rand(1, generator=generator, dtype=torch.float64)[0]
    return float((mean + std * torch.special.ndtri(a + u * (b - a))).clamp(low, high))


def cosine_ratio(generator: torch.Generator | None = None) -> float:
    return math.cos(math.pi / 2 * float(torch.rand(1, generator=generator, dtype=torch.float64)[0]))


def mask_from_order(orders: torch.Tensor, num_masked: int) -> torch.Tensor:
    """(B, N) bool, True at the first `num_masked` positions of each order."""
    mask = torch.zeros(orders.shape, dtype=torch.bool, device=orders.device)
    mask.scatter_(1, orders[:, :num_masked], True)
    return mask


def reveal_counts(num_tokens: int, num_steps: int) -> list[int]:
    """Tokens revealed by each of `num_steps` iterative decoding steps (the cosine schedule, see the module doc)."""
    n = check_positive_int(num_tokens, "number of tokens")
    k = check_positive_int(num_steps, "number of steps")
    if k > n:
        raise GenlabError(f"{k} decoding steps for {n} tokens: every step must reveal at least one token")
    counts, masked = [], n
    for step in range(k):
        if step == k - 1:
            keep = 0
        else:
            keep = max(1, min(masked - 1, math.floor(n * math.cos(math.pi / 2 * (step + 1) / k))))
        counts.append(masked - keep)
        masked = keep
    return counts


def linear_cfg(scale: float, num_tokens: int, still_masked: int) -> float:
    """MAR's linear CFG ramp: 1 + (scale - 1) (N - still masked after this step) / N."""
    return 1.0 + (scale - 1.0) * (num_tokens - still_masked) / num_tokens
