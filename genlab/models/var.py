"""VARModel: visual autoregression by next-scale prediction (Tian et al. 2024; FoundationVision/VAR models/var.py,
models/basic_var.py), the baseline of M-VAR.

The token maps of a multi-scale VQ tokenizer (sides patch_nums = p_1 < ... < p_K) are concatenated coarse to fine,
L = sum p_k^2. Position 0 .. p_1^2 - 1 hold the start token (class embedding + pos_start); scale k > 0's positions
hold the word embedding of the area-downsampled running reconstruction after scales < k (the tokenizer's
`idx_bl_to_var_input`). Level and position embeddings are added everywhere; every block is adaLN-modulated by the
class embedding (6 chunks: gamma1, gamma2, scale1, scale2, shift1, shift2), and attention is block-causal: a
token sees its own and every coarser scale. One forward pass per scale samples all of its tokens at once; a KV
cache keeps the coarser scales' keys and values.

Sampling goes through genlab's token sampler (models/sampling.py): the model's decoding state carries the KV
caches, the running reconstruction f_hat and the tokenizer step that turns one scale's ids into the next scale's
input, and `guidance_progress` ramps CFG by scale index (VAR's t_k = k / (K - 1)), not by token count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError, check_positive_int
from ..layers import KVCache
from ..layers.attention import attention
from ..modeling import ClassConditionalMixin, GenlabModel, PresetMixin
from ..schedulers.orders import check_patch_nums, level_mask

VAR_PRESETS = {
    # name: depth; width 64 * depth and one head per 64 channels as VAR, except the CPU-sized ones
    "test": dict(depth=2, hidden_size=64, num_heads=2),
    "tiny": dict(depth=6, hidden_size=192, num_heads=3),
    "d16": dict(depth=16, hidden_size=1024, num_heads=16),
    "d20": dict(depth=20, hidden_size=1280, num_heads=20),
    "d24": dict(depth=24, hidden_size=1536, num_heads=24),
    "d30": dict(depth=30, hidden_size=1920, num_heads=30),
}


def scale_of_positions(patch_nums) -> torch.Tensor:
    """(L,) the scale index of every position of the concatenated token maps."""
    return torch.cat([torch.full((p * p,), k, dtype=torch.long) for k, p in enumerate(patch_nums)])


def block_causal_mask(patch_nums) -> torch.Tensor:
    """(L, L) VAR's mask: position i may attend j iff scale(j) <= scale(i)."""
    return level_mask(scale_of_positions(patch_nums))


class VARAttention(nn.Module):
    """VAR's self-attention: qkv without a k bias (learned q and v biases), optional l2-normalised q and k with a
    learned per-head temperature (scale_mul, capped at 100) and softmax scale 1, else softmax scale
    0.25 / sqrt(head_dim). With a KVCache, new keys / values are appended and the queries see every filled entry."""

    def __init__(self, dim: int, num_heads: int, l2_norm: bool = True):
        super().__init__()
        if dim % num_heads:
            raise GenlabError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.l2_norm = num_heads, dim // num_heads, l2_norm
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim), persistent=False)
        if l2_norm:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        q, k, v = F.linear(x, self.mat_qkv.weight, bias).view(B, N, 3, self.num_heads, self.head_dim) \
            .permute(2, 0, 3, 1, 4)
        if self.l2_norm:
            q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp(max=math.log(100)).exp()
            k = F.normalize(k, dim=-1)
            # `attention` applies 1 / sqrt(head_dim); VAR's l2-normalised attention uses softmax scale 1
            q = q * math.sqrt(self.head_dim)
        else:
            q = q * 0.25  # VAR's softmax scale 0.25 / sqrt(head_dim)
        if cache is not None:
            k, v = cache.update(k, v, positions)
        out = attention(q, k, v, mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class FFN(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, round(dim * mlp_ratio))
        self.fc2 = nn.Linear(round(dim * mlp_ratio), dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class VARBlock(nn.Module):
    """adaLN self-attention block (VAR's AdaLNSelfAttn): chunks (gamma1, gamma2, scale1, scale2, shift1, shift2)."""

    num_chunks = 6

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, l2_norm: bool):
        super().__init__()
        self.ln_wo_grad = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = VARAttention(dim, num_heads, l2_norm)
        self.ffn = FFN(dim, mlp_ratio)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, self.num_chunks * dim))

    def chunks(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.ada_lin(cond).view(-1, 1, self.num_chunks, cond.shape[-1]).unbind(2)

    def forward(self, x, cond, mask=None, cache=None, positions=None, state=None):
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.chunks(cond)
        x = x + self.attn(self.ln_wo_grad(x) * (1 + scale1) + shift1, mask, cache, positions) * gamma1
        return x + self.ffn(self.ln_wo_grad(x) * (1 + scale2) + shift2) * gamma2, state


class AdaLNBeforeHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.ln_wo_grad = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, cond):
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, cond.shape[-1]).unbind(2)
        return self.ln_wo_grad(x) * (1 + scale) + shift


@dataclass
class ScaleDecodingState:
    """What a next-scale sampler carries between forward passes (opaque to the token sampler)."""

    next_input: object  # the tokenizer's next_scale_input(k, f_hat, ids) -> (f_hat, (B, p_{k+1}^2, C) tokens)
    f_hat: torch.Tensor | None = None
    caches: list = field(default_factory=list)  # per block: a KVCache (VAR) or a Mamba state (M-VAR)
    step: int = 0


class VARModel(PresetMixin, ClassConditionalMixin, GenlabModel):
    """Class-conditional next-scale prediction over a multi-scale VQ tokenizer's id pyramid.

    forward(class_labels (B,), var_input (B, L - p_1^2, latent_channels)) -> logits (B, L, vocab_size): the
    teacher-forced pass of training. Presets: test, tiny (CPU sizes) and d16 .. d30 (VAR's; with
    patch_nums of the 256 px schedule and 4096 codes of 32 dims, d16 has 310M parameters)."""
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("VARBlock",)

    PRESETS, PRESET_FAMILY = VAR_PRESETS, "VAR"
    block_class = VARBlock

    @register_to_config
    def __init__(self, patch_nums: list | tuple = (1, 2, 3, 4, 6, 8), vocab_size: int = 512,
                 latent_channels: int = 16, hidden_size: int = 192, depth: int = 6, num_heads: int = 3,
                 mlp_ratio: float = 4.0, num_classes: int = 10, class_names: list | None = None,
                 attn_l2_norm: bool = True, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-3,
                 init_head: float = 0.02):
        super().__init__()
        nums = check_patch_nums(patch_nums)
        for value, name in [(vocab_size, "vocab_size"), (latent_channels, "latent_channels"),
                            (hidden_size, "hidden_size"), (depth, "depth"), (num_heads, "num_heads"),
                            (num_classes, "num_classes")]:
            check_positive_int(value, name)
        if class_names is not None and len(class_names) != num_classes:
            raise GenlabError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
        C, L, first = hidden_size, sum(p * p for p in nums), nums[0] ** 2
        self.class_emb = nn.Embedding(num_classes + 1, C)  # the last row: no class (CFG)
        self.pos_start = nn.Parameter(torch.empty(1, first, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, L, C))
        self.lvl_embed = nn.Embedding(len(nums), C)
        self.word_embed = nn.Linear(latent_channels, C)
        self.blocks = nn.ModuleList(self.make_block(i) for i in range(depth))
        self.head_nm = AdaLNBeforeHead(C)
        self.head = nn.Linear(C, vocab_size)
        self.register_buffer("lvl_1L", scale_of_positions(nums)[None], persistent=False)
        self.init_weights()

    # ---- structure a subclass changes ----------------------------------------------------------------------
    def make_block(self, index: int) -> nn.Module:
        c = self.config
        return VARBlock(c.hidden_size, c.num_heads, c.mlp_ratio, c.attn_l2_norm)

    def training_mask(self) -> torch.Tensor:
        """(L, L) attention mask of the teacher-forced pass: block-causal."""
        return self._cached("mask", lambda: block_causal_mask(self.patch_nums))

    def step_cache(self, batch_size: int, block: nn.Module):
        """Per-block decoding memory: VAR's KV cache over every scale so far."""
        return KVCache(batch_size, block.attn.num_heads, self.num_tokens, block.attn.head_dim,
                       self.dtype, self.device)

    def init_weights(self):
        """VAR's init_weights: trunc-normal std sqrt(1 / 3C) everywhere, the head scaled by init_head, adaLN rows of
        the gammas by init_adaln_gamma and the rest by init_adaln, attn.proj and ffn.fc2 divided by sqrt(2 depth)."""
        c = self.config
        C, std = c.hidden_size, (1 / c.hidden_size / 3) ** 0.5
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(p, std=std)
        with torch.no_grad():
            self.head.weight.mul_(c.init_head)
            self.head_nm.ada_lin[-1].weight.mul_(c.init_adaln)
            for block in self.blocks:
                block.attn.proj.weight.div_(math.sqrt(2 * c.depth))
                block.ffn.fc2.weight.div_(math.sqrt(2 * c.depth))
                w = block.ada_lin[-1].weight
                gammas = self.gamma_chunks(block) * C
                w[:gammas].mul_(c.init_adaln_gamma)
                w[gammas:].mul_(c.init_adaln)

    def gamma_chunks(self, block) -> int:
        """How many leading adaLN chunks are residual gates (scaled by init_adaln_gamma at init)."""
        return 2

    # ---- geometry ----------------------------------------------------------------------------------------
    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.config.patch_nums)

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    @property
    def levels(self) -> list[torch.Tensor]:
        """The positions each forward pass of sampling produces: one scale each."""
        starts = [0]
        for p in self.patch_nums:
            starts.append(starts[-1] + p * p)
        return [torch.arange(a, b) for a, b in zip(starts, starts[1:])]

    def guidance_progress(self, step: int) -> float:
        """VAR's CFG ramp runs over the scales: t_k = k / (K - 1), so the first scale is unguided."""
        K = len(self.patch_nums)
        return step / (K - 1) if K > 1 else 1.0

    # ---- training forward --------------------------------------------------------------------------------
    def check_inputs(self, class_labels: torch.Tensor, var_input: torch.Tensor) -> None:
        c = self.config
        want = (self.num_tokens - self.patch_nums[0] ** 2, c.latent_channels)
        if var_input.ndim != 3 or tuple(var_input.shape[1:]) != want:
            raise GenlabError(f"{type(self).__name__} expects var_input of shape (B, {want[0]}, {want[1]}) (the "
                              f"tokenizer's idx_bl_to_var_input), got {tuple(var_input.shape)}")
        if class_labels.shape != (var_input.shape[0],):
            raise GenlabError(f"class_labels must have shape ({var_input.shape[0]},); got "
                              f"{tuple(class_labels.shape)}")
        if class_labels.numel() and (int(class_labels.min()) < 0 or int(class_labels.max()) > c.num_classes):
            raise GenlabError(f"class labels must lie in [0, {c.num_classes}] ({c.num_classes} = no class)")

    def embed(self, class_labels, tokens, scale: slice):
        """Inputs of positions `scale` (a slice of the L positions): the start token at scale 0, else the word
        embedding of `tokens` (B, n, latent_channels); plus level and position embeddings."""
        cond = self.class_emb(class_labels)
        if scale.start == 0:
            x = cond[:, None] + self.pos_start  # (B, p_1^2, C): the first scale has no VQ input
            if tokens is not None and tokens.shape[1]:
                x = torch.cat([x, self.word_embed(tokens.to(x.dtype))], 1)
        else:
            x = self.word_embed(tokens.to(cond.dtype))
        return x + self.lvl_embed(self.lvl_1L[:, scale]) + self.pos_1LC[:, scale], cond

    def logits(self, x, cond):
        return self.head(self.head_nm(x.float(), cond.float())).float()

    def forward(self, class_labels: torch.Tensor, var_input: torch.Tensor) -> torch.Tensor:
        class_labels = class_labels.to(self.device).long().reshape(-1)
        self.check_inputs(class_labels, var_input)
        x, cond = self.embed(class_labels, var_input.to(self.device), slice(0, self.num_tokens))
        mask = self.training_mask().to(self.device)
        for block in self.blocks:
            x, _ = block(x, cond, mask)
        return self.logits(x, cond)

    # ---- sampling (driven by models/sampling.py) ----------------------------------------------------------
    def new_state(self, batch_size: int, next_input=None) -> ScaleDecodingState:
        if next_input is None:
            raise GenlabError(f"{type(self).__name__} samples through its tokenizer: pass its next_scale_input "
                              "(the pipeline does)")
        return ScaleDecodingState(next_input, caches=[self.step_cache(batch_size, b) for b in self.blocks])

    def decode_step(self, tokens, positions, class_labels, state: ScaleDecodingState, targets) -> torch.Tensor:
        """One scale: `tokens` are the ids of the previous scale (None at the first), `targets` this scale's
        positions. Returns (B, p_k^2, vocab_size) logits."""
        k = state.step
        start, end = int(targets[0]), int(targets[-1]) + 1
        if k == 0:
            inputs = None
        else:
            if state.f_hat is None:
                s = self.patch_nums[-1]
                state.f_hat = torch.zeros(tokens.shape[0], self.config.latent_channels, s, s, device=self.device)
            state.f_hat, inputs = state.next_input(k - 1, state.f_hat, tokens)
        x, cond = self.embed(class_labels, inputs, slice(start, end))
        pos = torch.arange(start, end, device=self.device)
        for i, block in enumerate(self.blocks):
            x, state.caches[i] = self.decode_block(block, x, cond, state.caches[i], pos)
        state.step += 1
        return self.logits(x, cond)

    def decode_block(self, block, x, cond, cache, positions):
        """VAR: the new scale attends to every cached scale and to itself (block-causal: no mask needed)."""
        x, _ = block(x, cond, None, cache, positions)
        return x, cache
