"""Mamba-2 in pure PyTorch: the selective state-space mixer M-VAR runs across scales (Dao & Gu 2024, SSD).

Per head, with a scalar decay a_t = exp(dt_t * A) (A < 0) and input-dependent B_t, C_t (one group):

    h_t = a_t h_{t-1} + dt_t x_t B_t^T        h: (headdim, d_state)
    y_t = h_t C_t + D x_t

Two exact forms of that recurrence live here: `ssd_sequential` (the reference, one step at a time) and
`ssd_chunked` (the state-space-duality form: within a chunk a masked "attention" with decays
exp(sum_{j<t<=i} dt_t A), between chunks the carried state), both starting from an optional state and returning
the final one, so a sampler can feed one scale at a time and carry the state (M-VAR's official code instead re-runs
the whole prefix each step). `Mamba2` keeps mamba_ssm's parameter names (in_proj, conv1d, dt_bias, A_log, D,
norm.weight, out_proj) so official state dicts load, and calls mamba_ssm's Triton kernel for the scan when that
package is installed and the tensors are on CUDA (the `[gpu]` extra); the torch path is the default and is tested.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError, check_positive_int


def _segsum(x: torch.Tensor) -> torch.Tensor:
    """x (..., T) -> (..., T, T) with [i, j] = sum_{j<t<=i} x_t below the diagonal, 0 on it, -inf above. Summing
    masked copies (not differencing one long cumsum) keeps it exact for long decays."""
    t = x.shape[-1]
    x = x[..., None].expand(*x.shape, t)
    below = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device), -1)
    out = torch.cumsum(x.masked_fill(~below, 0), dim=-2)
    return out.masked_fill(~torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device)), -math.inf)


def ssd_sequential(x, dt, A, B, C, D=None, state=None):
    """The recurrence step by step. x (b, l, h, p), dt (b, l, h) after softplus, A (h,) negative, B and C
    (b, l, n) (one group), D (h,) or None, state (b, h, p, n) or None -> (y (b, l, h, p), final state)."""
    b, length, h, p = x.shape
    state = x.new_zeros(b, h, p, B.shape[-1]) if state is None else state
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)  # (b, h)
        state = decay[..., None, None] * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, None, None, :]
        ys.append((state * C[:, t, None, None, :]).sum(-1))
    y = torch.stack(ys, 1) if ys else x.new_zeros(b, 0, h, p)
    if D is not None:
        y = y + D[:, None] * x
    return y, state


def ssd_chunked(x, dt, A, B, C, D=None, state=None, chunk_size: int = 64):
    """The same recurrence in chunks of `chunk_size` (the SSD form, as mamba_ssm's ssd_minimal); arguments and
    results as `ssd_sequential`. A sequence shorter than a chunk is one chunk of its own length (a sampler's
    first scales are 1, 4, 9 tokens: padding them to 64 would be 60x the work); otherwise the tail is padded with
    dt = 0 steps, which neither decay nor add to the state. Every contraction is a batched matmul over
    (batch, head, chunk), which CPU BLAS runs far faster than the equivalent multi-operand einsum."""
    b, length, h, p = x.shape
    n = B.shape[-1]
    chunk_size = max(1, min(chunk_size, length))
    pad = (-length) % chunk_size
    if pad:
        x, B, C = (F.pad(v, (0, 0) * (v.ndim - 2) + (0, pad)) for v in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c = x.shape[1] // chunk_size
    xdt = (x * dt[..., None]).reshape(b, c, chunk_size, h, p).permute(0, 3, 1, 2, 4)  # (b, h, c, l, p)
    a = (dt * A).reshape(b, c, chunk_size, h).permute(0, 3, 1, 2)  # (b, h, c, l)
    a_cum = torch.cumsum(a, -1)
    Bc, Cc = B.reshape(b, 1, c, chunk_size, n), C.reshape(b, 1, c, chunk_size, n)
    # within each chunk: y_i += sum_{j<=i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j
    y = (torch.exp(_segsum(a)) * (Cc @ Bc.transpose(-1, -2))) @ xdt  # (b, h, c, l, p)
    # each chunk's own contribution to the state at its end, then the states carried across chunks
    to_end = torch.exp(a_cum[..., -1:] - a_cum)[..., None]
    chunk_states = (xdt * to_end).transpose(-1, -2) @ Bc  # (b, h, c, p, n)
    start = x.new_zeros(b, h, 1, p, n) if state is None else state[:, :, None]
    chunk_states = torch.cat([start, chunk_states], 2)
    across = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c + 1, c + 1)
    states = (across @ chunk_states.flatten(-2)).view(b, h, c + 1, p, n)
    entering, final = states[:, :, :-1], states[:, :, -1]
    # the state entering each chunk, decayed to every position inside it
    y = y + torch.exp(a_cum)[..., None] * (Cc @ entering.transpose(-1, -2))
    y = y.permute(0, 2, 3, 1, 4).reshape(b, c * chunk_size, h, p)[:, :length]
    if D is not None:
        y = y + D[:, None] * x[:, :length]
    return y, final


def _mamba_ssm_scan():
    """mamba_ssm's fused chunk scan when the package is installed, else None."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # not installed, or installed without its CUDA build
        return None
    return mamba_chunk_scan_combined


class RMSNormGated(nn.Module):
    """rmsnorm(y * silu(z)) * weight, mamba_ssm's gated norm with norm_before_gate=False."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y * F.silu(z)).float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(z.dtype)


class Mamba2(nn.Module):
    """Mamba-2 mixer (mamba_ssm.Mamba2 defaults: d_state 64, d_conv 4, expand 2, headdim 64, one group).

    forward(u (B, L, C), state=None) -> (out (B, L, C), state): `state` = (conv_state (B, conv_dim, d_conv - 1),
    ssm_state (B, heads, headdim, d_state)) after the last position, so the next call continues the sequence
    exactly where this one stopped (a sampler feeding one scale at a time).
    """

    def __init__(self, d_model: int, d_state: int = 64, d_conv: int = 4, expand: int = 2, headdim: int = 64,
                 chunk_size: int = 64, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 A_init_range: tuple = (1.0, 16.0), use_kernels: bool = True):
        super().__init__()
        for value, name in [(d_model, "d_model"), (d_state, "d_state"), (d_conv, "d_conv"), (expand, "expand"),
                            (headdim, "headdim"), (chunk_size, "chunk_size")]:
            check_positive_int(value, name)
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise GenlabError(f"Mamba2: expand * d_model = {self.d_inner} must be a multiple of headdim={headdim}")
        self.d_state, self.d_conv, self.headdim, self.chunk_size = d_state, d_conv, headdim, chunk_size
        self.nheads = self.d_inner // headdim
        self.use_kernels = use_kernels
        conv_dim = self.d_inner + 2 * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = RMSNormGated(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def empty_state(self, batch: int, device=None, dtype=torch.float32):
        conv_dim = self.d_inner + 2 * self.d_state
        return (torch.zeros(batch, conv_dim, self.d_conv - 1, device=device, dtype=dtype),
                torch.zeros(batch, self.nheads, self.headdim, self.d_state, device=device, dtype=torch.float32))

    def forward(self, u: torch.Tensor, state=None, scan: str = "chunked"):
        """`scan`: "chunked" (default), or "sequential" (the reference recurrence, for tests)."""
        b, length, _ = u.shape
        z, xbc, dt = torch.split(self.in_proj(u), [self.d_inner, self.d_inner + 2 * self.d_state, self.nheads], -1)
        # causal depthwise conv over the sequence, continuing from the carried last d_conv - 1 inputs
        xbc_t = xbc.transpose(1, 2)
        if state is None:
            conv_in = F.pad(xbc_t, (self.d_conv - 1, 0))
        else:
            conv_in = torch.cat([state[0].to(xbc_t.dtype), xbc_t], -1)
        conv_state = conv_in[..., conv_in.shape[-1] - (self.d_conv - 1):]
        xbc = F.silu(F.conv1d(conv_in, self.conv1d.weight, self.conv1d.bias, groups=self.conv1d.groups))
        x, B, C = torch.split(xbc.transpose(1, 2), [self.d_inner, self.d_state, self.d_state], -1)
        # the scan in (at least) float32: decays multiply over hundreds of steps
        f = torch.float64 if u.dtype == torch.float64 else torch.float32
        x, B, C = x.reshape(b, length, self.nheads, self.headdim).to(f), B.to(f), C.to(f)
        dt = F.softplus(dt.to(f) + self.dt_bias.to(f))
        A, D = -torch.exp(self.A_log.to(f)), self.D.to(f)
        ssm_state = None if state is None else state[1].to(f)
        kernel = _mamba_ssm_scan() if (self.use_kernels and u.is_cuda and scan == "chunked") else None
        if kernel is not None:
            y, ssm_state = kernel(x, dt, A, B[:, :, None], C[:, :, None], self.chunk_size, D=D,
                                  initial_states=ssm_state, return_final_states=True)
        elif scan == "sequential":
            y, ssm_state = ssd_sequential(x, dt, A, B, C, D, ssm_state)
        elif scan == "chunked":
            y, ssm_state = ssd_chunked(x, dt, A, B, C, D, ssm_state, self.chunk_size)
        else:
            raise GenlabError(f"Mamba2: scan must be 'chunked' or 'sequential', got {scan!r}")
        y = self.norm(y.reshape(b, length, self.d_inner).to(u.dtype), z)
        return self.out_proj(y), (conv_state, ssm_state)
