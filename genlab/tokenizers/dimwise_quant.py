"""TokenBridge's post-training dimension-wise quantizer of a continuous latent (Wang et al. 2025), and the
frequency-based channel order of its per-channel AR head.

No parameters: every channel of every latent vector is quantized on its own into B levels. The (scaled) latent x in
[alpha_min, alpha_max] is mapped onto [-r, r] of a standard normal; the level boundaries are its B-quantiles
b_i = Phi^-1(i / B), clamped to [-r, r]; each level is reconstructed at the normal's expected value inside it,
gamma_i = (phi(b_i) - phi(b_i+1)) / (Phi(b_i+1) - Phi(b_i)); a value's index is its *nearest* gamma (not the
interval it falls in: the two differ on ~0.5 % of Gaussian values). `scheme="uniform"` uses B equal-width levels
instead (the paper's slightly worse ablation). Indices are (N, L, C): one token is a vector of C indices.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GenlabError, check_number, check_positive_int
from .vq import codebook_stats

SCHEMES = ("gaussian", "uniform")


def gaussian_levels(num_levels: int, std_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(boundaries (B + 1,), reconstruction values (B,)) of the Gaussian-quantile quantizer, computed in float64."""
    p = torch.arange(num_levels + 1, dtype=torch.float64) / num_levels
    b = torch.special.ndtri(p).clamp(-std_range, std_range)  # ndtri(0) = -inf, ndtri(1) = +inf: clamped to -r, r
    pdf = torch.exp(-0.5 * b * b) / math.sqrt(2 * math.pi)
    mass = torch.special.ndtr(b[1:]) - torch.special.ndtr(b[:-1])
    gamma = (pdf[:-1] - pdf[1:]) / torch.where(mass == 0, torch.full_like(mass, 1e-10), mass)
    return b, gamma


def uniform_levels(num_levels: int, std_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(boundaries, reconstruction values) of B equal-width levels on [-r, r], each reconstructed at its centre."""
    b = torch.linspace(-std_range, std_range, num_levels + 1, dtype=torch.float64)
    return b, (b[:-1] + b[1:]) / 2


class DimensionwiseQuantizer(nn.Module):
    """Parameter-free per-channel quantizer: `quantize(x) -> (indices, dequantized)`, `dequantize(indices)`.

    num_levels: B; value_range: (alpha_min, alpha_max) of the scaled latent that maps onto [-std_range, std_range];
    num_channels: C, checked against every latent (None: any). The tables are buffers (saved, never trained)."""

    def __init__(self, num_levels: int = 64, value_range: tuple[float, float] = (-5.0, 5.0), std_range: float = 3.0,
                 scheme: str = "gaussian", num_channels: int | None = None):
        super().__init__()
        if not isinstance(num_levels, int) or isinstance(num_levels, bool) or num_levels < 2:
            raise GenlabError(f"num_levels must be an integer >= 2 (B levels per channel), got {num_levels!r}")
        lo, hi = (check_number(v, "value_range") for v in value_range)
        if not hi > lo:
            raise GenlabError(f"value_range must be (min, max) with max > min, got {tuple(value_range)}")
        std_range = check_number(std_range, "std_range")
        if std_range <= 0:
            raise GenlabError(f"std_range must be > 0, got {std_range}")
        if scheme not in SCHEMES:
            raise GenlabError(f"unknown quantizer scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        self.num_levels, self.value_range, self.std_range, self.scheme = num_levels, (lo, hi), std_range, scheme
        self.num_channels = None if num_channels is None else check_positive_int(num_channels, "num_channels")
        b, gamma = (gaussian_levels if scheme == "gaussian" else uniform_levels)(num_levels, std_range)
        self.register_buffer("boundaries", b.float())
        self.register_buffer("reconstruction_values", gamma.float())

    @property
    def bits(self) -> float:
        return math.log2(self.num_levels)

    def _check(self, x: torch.Tensor, what: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            raise GenlabError(f"{what} must be a tensor (..., C), got {type(x).__name__}")
        if self.num_channels is not None and x.shape[-1] != self.num_channels:
            raise GenlabError(f"{what} has {x.shape[-1]} channels in its last dimension; this quantizer was set up "
                              f"for {self.num_channels}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> the standard-normal axis, clipped to [-r, r]."""
        lo, hi = self.value_range
        r = self.std_range
        return ((x - lo) / (hi - lo) * 2 * r - r).clamp(-r, r)

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., C) latent -> (indices (..., C) int64 in [0, B), dequantized values (..., C))."""
        self._check(x, "latent")
        gamma = self.reconstruction_values
        # nearest gamma through the midpoints between neighbours (sorted levels: equal to argmin |x - gamma|)
        mids = (gamma[1:] + gamma[:-1]) / 2
        idx = torch.bucketize(self.normalize(x).contiguous(), mids)
        return idx, self.dequantize(idx)

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """(..., C) indices -> (..., C) latent values (the level's reconstruction value, mapped back)."""
        self._check(indices, "indices")
        if indices.dtype.is_floating_point or indices.numel() and (indices.min() < 0 or indices.max() >= self.num_levels):
            raise GenlabError(f"indices must be integers in [0, {self.num_levels})")
        lo, hi = self.value_range
        r = self.std_range
        return (self.reconstruction_values[indices] + r) / (2 * r) * (hi - lo) + lo

    def out_of_range(self, x: torch.Tensor) -> float:
        """Fraction of latent values outside value_range (they saturate at the end levels)."""
        lo, hi = self.value_range
        return ((x < lo) | (x > hi)).float().mean().item()

    def codebook_usage(self, indices: torch.Tensor) -> dict:
        """Per-channel index statistics pooled over channels: fraction of the B levels used and entropy in bits."""
        used, perplexity = codebook_stats(indices, self.num_levels)
        return {"usage": used.item(), "entropy_bits": math.log2(perplexity.item())}

    @staticmethod
    def fit_range(latents: torch.Tensor, coverage: float = 0.9999) -> tuple[float, float]:
        """A symmetric value_range (-a, a) holding `coverage` of the latent values (for a new VAE or scale)."""
        coverage = check_number(coverage, "coverage")
        if not 0 < coverage <= 1:
            raise GenlabError(f"coverage must lie in (0, 1], got {coverage}")
        values = latents.detach().abs().flatten().float()[:2 ** 24]  # torch.quantile takes at most 2^24 values
        a = torch.quantile(values, coverage).item()
        return -a, a

    def extra_repr(self) -> str:
        return (f"num_levels={self.num_levels}, value_range={self.value_range}, std_range={self.std_range}, "
                f"scheme={self.scheme!r}, num_channels={self.num_channels}")


def compute_channel_order(latents: torch.Tensor, cutoff: float = 0.25) -> list[int]:
    """(N, C, h, w) latents -> the channels sorted by the share of their spectral power at low frequency, highest
    first: rFFT2 of each map, power averaged over the batch, the share inside radius <= cutoff * Nyquist (the mean,
    at frequency 0, included). TokenBridge's head generates channels in this order; the cutoff is genlab's choice."""
    if not isinstance(latents, torch.Tensor) or latents.dim() != 4:
        raise GenlabError(f"latents must be a (N, C, h, w) tensor, got "
                          f"{tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__}")
    cutoff = check_number(cutoff, "cutoff")
    if not 0 < cutoff <= 1:
        raise GenlabError(f"cutoff must lie in (0, 1] (a fraction of the Nyquist frequency), got {cutoff}")
    h, w = latents.shape[-2:]
    power = torch.fft.rfft2(latents.double()).abs().pow(2).mean(0)  # (C, h, w // 2 + 1)
    fy = torch.fft.fftfreq(h, dtype=torch.float64).abs() / 0.5  # in units of Nyquist
    fx = torch.fft.rfftfreq(w, dtype=torch.float64) / 0.5
    low = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() <= cutoff
    share = (power * low).sum((1, 2)) / power.sum((1, 2)).clamp(min=1e-30)
    # stable sort: equal shares keep their channel order, so the result is deterministic
    return torch.sort(-share, stable=True).indices.tolist()
