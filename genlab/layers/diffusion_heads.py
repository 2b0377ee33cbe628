"""Diffusion heads that turn a transformer's per-token condition into continuous tokens (MAR, Hi-MAR, later
TokenBridge's baseline), and the one noise process both use.

* `MLPDiffusionHead` (MAR's SimpleMLPAdaLN): denoises each token on its own from its condition z_i: residual
  MLP blocks modulated (shift, scale, gate) by t_emb + Linear(z_i); adaLN and output zero-initialised, so it
  predicts ε = 0 at init.
* `DiTDiffusionHead` (Hi-MAR's second head): denoises the whole token map jointly: a 1x1 patch embedding plus fixed
  2-D sin-cos positions, adaLN-Zero transformer blocks modulated per token by t_emb + Linear(z_i), full
  bidirectional attention; outputs ε, zero at init.
* `DiffusionProcess`: ε-prediction DDPM over 1000 steps with the cosine ᾱ schedule, on diffusers' schedulers:
  `DDPMScheduler.add_noise` for training, and for sampling `DDIMScheduler.step` with eta = 1 (the DDPM posterior of a
  respaced chain, fixed small variance) whose `variance_noise` carries the temperature (noise std x T, as MAR).
  MAR's learned-variance VLB term is left out: both heads train on the ε-MSE (as Hi-MAR's DiT head does).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError, check_positive_int
from .blocks import AdaLNBlock, modulate
from .embeddings import TimestepEmbedder


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (h * w, dim), rows then columns, as MAE/DiT."""
    h, w = grid
    if dim % 4:
        raise GenlabError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    parts = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        angles = pos[:, None] * omega[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


class ResidualMLPBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), (shift, scale, gate) from the condition."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x, c):
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class MLPDiffusionHead(nn.Module):
    """ε-prediction for each token separately: forward(x_t (..., token_dim), t (...,), z (..., cond_dim))."""

    def __init__(self, token_dim: int, cond_dim: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.input_proj = nn.Linear(token_dim, width)
        self.time_embed = TimestepEmbedder(width, max_period=10000.0)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(ResidualMLPBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.output = nn.Linear(width, token_dim)
        for layer in (self.final_modulation[1], self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x, t, z = x.reshape(-1, shape[-1]), t.reshape(-1), z.reshape(-1, z.shape[-1])
        c = self.time_embed(t) + self.cond_embed(z)
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.output(modulate(self.final_norm(h), shift, scale)).reshape(shape)


class DiTDiffusionHead(nn.Module):
    """ε-prediction for a whole token map: forward(x_t (B, N, token_dim), t (B,), z (B, N, cond_dim)) with the N
    tokens on a `grid` (h, w); every token attends to every other; modulation is per token."""

    def __init__(self, token_dim: int, cond_dim: int, grid: tuple[int, int], width: int = 96, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.grid = tuple(grid)
        self.x_embed = nn.Linear(token_dim, width)
        self.time_embed = TimestepEmbedder(width, max_period=10000.0)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.register_buffer("pos_embed", sincos_2d(self.grid, width)[None], persistent=False)
        self.blocks = nn.ModuleList(AdaLNBlock(width, num_heads, mlp_ratio, qk_norm=False, zero_init=True)
                                    for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        self.output = nn.Linear(width, token_dim)
        for layer in (self.final_modulation, self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != math.prod(self.grid):
            raise GenlabError(f"the DiT head denoises {math.prod(self.grid)} tokens, got {x.shape[1]}")
        c = F.silu(self.time_embed(t)[:, None] + self.cond_embed(z))  # (B, N, width): per-token condition
        h = self.x_embed(x) + self.pos_embed
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.output(modulate(self.final_norm(h), shift, scale))


class DiffusionProcess:
    """ε-prediction DDPM on diffusers' schedulers (see the module doc). `steps` is the respaced chain length."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2"):
        from diffusers import DDIMScheduler, DDPMScheduler

        self.train = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                   clip_sample=False, prediction_type="epsilon")
        self.sample = DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                    clip_sample=False, prediction_type="epsilon", timestep_spacing="leading",
                                    steps_offset=1, set_alpha_to_one=True)
        self.num_train_timesteps = num_train_timesteps

    def loss(self, head, target: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """ε-MSE of `head` on `target` with a fresh t per row and fresh ε: rows are tokens (M, d) for a token head,
        token maps (B, N, d) for a map head. Averaged over the positions where `weight` (target's shape without d,
        0/1) is 1, or over all."""
        t = torch.randint(0, self.num_train_timesteps, target.shape[:1], generator=generator).to(target.device)
        noise = torch.randn(target.shape, generator=generator, dtype=torch.float32).to(target.device, target.dtype)
        x_t = self.train.add_noise(target, noise, t)
        eps = head(x_t, t, z)
        err = (eps.float() - noise.float()).pow(2).mean(-1)
        if weight is None:
            return err.mean()
        return (err * weight).sum() / weight.sum().clamp(min=1)

    @torch.no_grad()
    def sample_tokens(self, head, z: torch.Tensor, steps: int, temperature: float = 1.0, cfg: float = 1.0,
                      generator: torch.Generator | None = None, known: torch.Tensor | None = None,
                      known_mask: torch.Tensor | None = None, token_dim: int | None = None, observe=None):
        """Run the reverse chain of `head` for conditions z: (B, d_z) per token, or (B, N, d_z) for a map head.

        With cfg != 1, z holds [uncond ; cond] (2B rows) and ε = ε_u + cfg (ε_c - ε_u) on shared noise. `known`
        (B, N, d) with `known_mask` (B, N) bool: before every reverse step those positions are set to
        q(x_t | known) with the chain's initial noise (clamping without resampling). observe(i, t, x) sees the head
        input at every step. Returns (B, ...) samples."""
        steps = check_positive_int(steps, "head steps")
        rows = z.shape[0] // 2 if cfg != 1.0 else z.shape[0]
        shape = (rows, token_dim) if z.dim() == 2 else (rows, z.shape[1], token_dim)
        noise0 = torch.randn(shape, generator=generator, dtype=torch.float32).to(z.device)
        x = noise0 * temperature
        scheduler = self.sample
        scheduler.set_timesteps(steps)
        for i, t in enumerate(scheduler.timesteps):
            if known is not None:
                clamped = self.train.add_noise(known, noise0, torch.full(known.shape[:1], int(t), dtype=torch.long))
                x = torch.where(known_mask[..., None], clamped, x)
            if observe is not None:
                observe(i, int(t), x)
            x_in = torch.cat([x, x]) if cfg != 1.0 else x
            tt = torch.full(x_in.shape[:1], int(t), dtype=torch.long, device=z.device)
            eps = head(x_in, tt, z)
            if cfg != 1.0:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + cfg * (eps_c - eps_u)
            variance_noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(z.device) * temperature
            x = scheduler.step(eps, t, x, eta=1.0, variance_noise=variance_noise).prev_sample
        return x
