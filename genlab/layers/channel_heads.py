"""TokenBridge's token heads over the channel axis: one B-way softmax per latent channel, conditioned on the backbone
state z of a position (Wang et al. 2025, `forward_channel_ar` / `_sample_channel_ar`).

`ChannelARHead`: a small causal transformer over C slots in the channel order pi. Slot 0's input is cond =
condition_proj(z); slot k > 0's is E_{k-1}(q_pi(k-1)) (C - 1 embedding tables: the last channel is never an input).
Each slot's adaLN condition is cond + timesteps_embeddings[k]; attention is causal with a LayerNorm on q and k;
the output is an affine LayerNorm, then an adaLN final layer, then C linear heads (head k: channel pi(k)). So
p(q | z) = prod_k p(q_pi(k) | q_pi(<k), z). Sampling runs one slot per pass with a KV cache (the official sampler
re-runs the prefix; `use_cache=False` does that, with the same logits).

`ParallelChannelHead`: the paper's ablation, C independent softmaxes from z (no dependency between channels).
Parameter names follow the official checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError
from ..models.sampling import sample_from_logits
from .attention import attention
from .blocks import modulate
from .kv_cache import KVCache


def check_order(order, num_channels: int) -> list[int]:
    order = list(range(num_channels)) if order is None else [int(i) for i in order]
    if sorted(order) != list(range(num_channels)):
        raise GenlabError(f"channel order {order} is not a permutation of the {num_channels} channels")
    return order


class CausalAttention(nn.Module):
    """Multi-head attention with a LayerNorm on q and k (per head), a causal mask, and an optional KVCache."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise GenlabError(f"head width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        start = 0
        if cache is not None:
            start = cache.length
            k, v = cache.update(k, v, torch.arange(start, start + N, device=x.device))
        # query i (sequence position start + i) sees keys 0 .. start + i; one query after the cache sees them all
        mask = None if N == 1 else torch.ones(N, k.shape[2], dtype=torch.bool, device=x.device).tril(start)
        return self.proj(attention(q, k, v, mask).transpose(1, 2).reshape(B, N, D))


class ChannelBlock(nn.Module):
    """DiT block with a per-slot condition: LN (no affine) + shift/scale/gate for attention and MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CausalAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU(approximate="tanh"))
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, modulation, cache=None):
        """modulation: adaLN_modulation(c) of the slots in x (the head computes it for all slots at once)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), cache)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class ChannelFinalLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, modulation):
        shift, scale = modulation.chunk(2, dim=-1)
        return modulate(self.norm_final(x), shift, scale)


class ChannelARHead(nn.Module):
    """See the module doc. z (M, cond_dim) -> per-channel logits; `loss(z, q)`, `sample(z, temperature, generator)`;
    q (M, C) are indices in channel order."""

    def __init__(self, num_channels: int, num_levels: int, cond_dim: int, width: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, order=None):
        super().__init__()
        C = self.num_channels = num_channels
        self.num_levels = num_levels
        self.register_buffer("order", torch.tensor(check_order(order, C)), persistent=True)
        self.condition_proj = nn.Linear(cond_dim, width)
        self.channel_embed = nn.Parameter(torch.zeros(1, C, width))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, C, width))
        self.token_embeddings = nn.ModuleList(nn.Embedding(num_levels, width) for _ in range(C - 1))
        self.channel_blocks = nn.ModuleList(ChannelBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.channel_norm = nn.LayerNorm(width, eps=1e-6)
        self.channel_final = ChannelFinalLayer(width)
        self.channel_heads = nn.ModuleList(nn.Linear(width, num_levels) for _ in range(C))
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for p in (self.channel_embed, self.timesteps_embeddings):
            nn.init.normal_(p, std=0.02)
        for block in [*self.channel_blocks, self.channel_final]:  # every adaLN starts at zero
            nn.init.zeros_(block.adaLN_modulation[1].weight)
            nn.init.zeros_(block.adaLN_modulation[1].bias)

    def _check(self, z: torch.Tensor, q: torch.Tensor | None = None) -> None:
        if z.dim() != 2 or z.shape[1] != self.condition_proj.in_features:
            raise GenlabError(f"the channel head takes z (M, {self.condition_proj.in_features}), got {tuple(z.shape)}")
        if q is not None and (q.shape != (z.shape[0], self.num_channels) or q.dtype.is_floating_point):
            raise GenlabError(f"targets must be integer indices (M, {self.num_channels}), got {tuple(q.shape)} "
                              f"{q.dtype}")

    def _slot_inputs(self, cond: torch.Tensor, q_slots: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Inputs of slots start..end-1: cond at slot 0, E_{k-1}(q of slot k-1) at slot k, + the slot embedding."""
        parts = [cond[:, None]] if start == 0 else []
        parts += [self.token_embeddings[k - 1](q_slots[:, k - 1])[:, None] for k in range(max(start, 1), end)]
        return torch.cat(parts, 1) + self.channel_embed[:, start:end]

    def _run(self, x, modulations, start: int, caches=None) -> torch.Tensor:
        """Slots start .. start + n - 1 through the blocks; `modulations`: `slot_modulations(cond)`."""
        modulations = [m[:, start:start + x.shape[1]] for m in modulations]
        for i, block in enumerate(self.channel_blocks):
            x = block(x, modulations[i], None if caches is None else caches[i])
        return self.channel_final(self.channel_norm(x), modulations[-1])

    def slot_modulations(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Each block's adaLN modulation (M, C, 6 width) and the final layer's (M, C, 2 width) for all C slots at
        once: a sampler then runs one matmul per layer per position instead of one per slot and pass."""
        c = cond[:, None] + self.timesteps_embeddings
        return [b.adaLN_modulation(c) for b in self.channel_blocks] + [self.channel_final.adaLN_modulation(c)]

    def logits(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Teacher-forced (M, C, B) logits in slot order (slot k predicts channel order[k])."""
        self._check(z, q)
        cond = self.condition_proj(z)
        h = self._run(self._slot_inputs(cond, q[:, self.order], 0, self.num_channels), self.slot_modulations(cond), 0)
        return torch.stack([head(h[:, k]) for k, head in enumerate(self.channel_heads)], 1)

    def loss(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over positions and channels."""
        logits = self.logits(z, q)
        return F.cross_entropy(logits.reshape(-1, self.num_levels).float(), q[:, self.order].reshape(-1))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               use_cache: bool = True, record: list | None = None) -> torch.Tensor:
        """(M, cond_dim) -> (M, C) indices in channel order, one slot per pass. `record`: a list that receives each
        slot's logits (M, B)."""
        self._check(z)
        M, C = z.shape[0], self.num_channels
        cond = self.condition_proj(z)
        q_slots = torch.zeros(M, C, dtype=torch.long, device=z.device)
        caches = KVCache.for_blocks(self.channel_blocks, M, C, cond.dtype, z.device) if use_cache else None
        modulations = self.slot_modulations(cond)
        for k in range(C):
            if use_cache:  # feed only slot k; the cache holds slots < k
                h = self._run(self._slot_inputs(cond, q_slots, k, k + 1), modulations, k, caches)[:, -1]
            else:  # the official sampler: the whole prefix again
                h = self._run(self._slot_inputs(cond, q_slots, 0, k + 1), modulations, 0)[:, -1]
            logits = self.channel_heads[k](h)
            if record is not None:
                record.append(logits)
            q_slots[:, k] = sample_from_logits(logits[:, None], temperature, generator=generator)[:, 0]
        q = torch.empty_like(q_slots)
        q[:, self.order] = q_slots  # slot k holds channel order[k]
        return q


class ParallelChannelHead(nn.Module):
    """The ablation: C independent B-way softmaxes from z (an MLP, then one linear head per channel)."""

    def __init__(self, num_channels: int, num_levels: int, cond_dim: int, width: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, order=None):
        super().__init__()
        self.num_channels, self.num_levels = num_channels, num_levels
        check_order(order, num_channels)  # accepted for a like-for-like config; the order cannot matter here
        layers = [nn.Linear(cond_dim, width), nn.GELU(approximate="tanh")]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.GELU(approximate="tanh")]
        self.mlp = nn.Sequential(*layers, nn.LayerNorm(width, eps=1e-6))
        self.channel_heads = nn.ModuleList(nn.Linear(width, num_levels) for _ in range(num_channels))

    def logits(self, z: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
        h = self.mlp(z)
        return torch.stack([head(h) for head in self.channel_heads], 1)

    def loss(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(z).reshape(-1, self.num_levels).float(), q.reshape(-1))

    @torch.no_grad()
    def sample(self, z: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               **_) -> torch.Tensor:
        logits = self.logits(z)
        return sample_from_logits(logits, temperature, generator=generator)
