"""Hi-MAR: hierarchical masked autoregression with low-resolution token pivots (Zheng et al., ICML 2025).

MAR (mar.py) with two phases on one sequence [buffer | N_s low-res | N_d dense]:
* phase 1 (phase index 0) generates the low-resolution tokens (the same tokenizer applied to the 2x downsampled
  image) with MAR's MLP head, the dense part fully masked; the decoder states at the low-res positions, taken at the
  step each position is revealed, are the **pivots** (hidden states, not the sampled tokens);
* phase 2 (phase index 1) generates the dense tokens with every low-res position filled by cond_z_proj(pivot), in
  few steps, with a Diffusion-Transformer head that denoises the whole dense map jointly, the already revealed
  tokens clamped to q(x_t | x_0) built from the chain's initial noise; the head's output is written to every
  still-masked position, and only the positions revealed in the step become visible to the encoder.
Both phases share the backbone; its blocks are scale-aware (a learned per-phase modulation) and each phase has its
own positions and per-position mask tokens.

Training: one random order per sample over the low-res and the dense positions; phase 1 masks a truncated-normal
share of the low-res tokens and every dense one (MLP-head loss on the masked low-res tokens); phase 2 fills the
low-res positions with the detached pivots where phase 1 masked them and a learned placeholder elsewhere (the whole
block is the placeholder with probability 1 - rho min(1, step / W), the official code's pivot drop), masks a cosine
share of the dense tokens, and trains the DiT head on the whole dense map; loss = 0.4 L1 + 0.6 L2.

`HiMARModel(pivots=False, head2="mlp")` is MAR exactly (the same modules and code path).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError, check_positive_int
from ..layers.diffusion_heads import DiTDiffusionHead, MLPDiffusionHead
from ..schedulers.masking import cosine_ratio, linear_cfg, mask_from_order, random_orders, reveal_counts, truncnorm_ratio
from .mar import MAR_PRESETS, MARModel, MAROutput

HEAD2 = ("dit", "mlp")


def downsample_images(images: torch.Tensor) -> torch.Tensor:
    """The half-resolution images Hi-MAR's low-res tokens are made from: bicubic with antialiasing, clamped."""
    h, w = images.shape[-2:]
    return F.interpolate(images, size=(h // 2, w // 2), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


class HiMARModel(MARModel):
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("ViTBlock", "ResidualMLPBlock", "AdaLNBlock")
    PRESETS, PRESET_FAMILY = MAR_PRESETS, "Hi-MAR"

    @register_to_config
    def __init__(self, sample_size: int = 8, in_channels: int = 4, patch_size: int = 1, hidden_size: int = 128,
                 decoder_hidden_size: int | None = None, encoder_depth: int = 2, decoder_depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, buffer_size: int = 4, num_classes: int = 10,
                 class_names: list | None = None, text_dim: int | None = None, head_width: int = 128,
                 head_depth: int = 3, head_steps: int = 50, diffusion_batch_mul: int = 1, dropout: float = 0.0,
                 pivots: bool = True, head2: str = "dit", head2_width: int = 96, head2_depth: int = 2,
                 head2_heads: int = 4, head2_steps: int = 50, phase1_steps: int | None = None,
                 pivot_drop_final: float = 0.25, pivot_drop_warmup_steps: int = 1000,
                 loss_weights: tuple = (0.4, 0.6)):
        if head2 not in HEAD2:
            raise GenlabError(f"head2 must be one of {HEAD2}, got {head2!r}")
        if pivots and (sample_size // patch_size) % 2:
            raise GenlabError(f"Hi-MAR's low-res tokens need an even token grid, got {sample_size // patch_size}")
        if not pivots and head2 != "mlp":
            raise GenlabError("without pivots Hi-MAR is MAR: use head2='mlp' (its one head)")
        if not 0 <= pivot_drop_final <= 1:
            raise GenlabError(f"pivot_drop_final is a probability, got {pivot_drop_final}")
        check_positive_int(head2_steps, "head2_steps")
        self.num_phases = 2 if pivots else 0
        self.num_low_tokens = ((sample_size // patch_size) // 2) ** 2 if pivots else 0
        super().__init__(sample_size, in_channels, patch_size, hidden_size, decoder_hidden_size, encoder_depth,
                         decoder_depth, num_heads, mlp_ratio, buffer_size, num_classes, class_names, text_dim,
                         head_width, head_depth, head_steps, diffusion_batch_mul, dropout)
        if not pivots:
            return
        d_dec = decoder_hidden_size or hidden_size
        self.cond_proj = nn.Linear(self.token_dim, hidden_size)  # low-res tokens (phase 1) and the placeholder
        self.cond_tokens = nn.Parameter(torch.zeros(1, self.num_low_tokens, self.token_dim))
        self.cond_z_proj = nn.Linear(d_dec, hidden_size)  # pivots into phase 2
        if head2 == "dit":
            self.dense_head = DiTDiffusionHead(self.token_dim, d_dec, self.grid, head2_width, head2_depth, head2_heads)
        else:
            self.dense_head = MLPDiffusionHead(self.token_dim, d_dec, head_width, head_depth)
        self.init_weights()

    # ------------------------------------------------------------ structure
    def build_backbone(self, d_dec: int):
        from .mar import MaskedARBackbone

        c = self.config
        self.backbone = MaskedARBackbone(self.num_low_tokens + self.num_tokens, c.buffer_size, c.hidden_size, d_dec,
                                         c.encoder_depth, c.decoder_depth, c.num_heads, c.mlp_ratio,
                                         self.num_phases, per_position_mask=self.num_phases > 0, dropout=c.dropout)

    def tokens_from_low_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The low-res tokens: latents of the 2x downsampled images (B, C, S/2, S/2), cut into the same patches."""
        from ..layers import patchify

        c = self.config
        if latents.dim() != 4 or latents.shape[1] != c.in_channels or latents.shape[-1] != c.sample_size // 2:
            raise GenlabError(f"Hi-MAR expects low-res latents (B, {c.in_channels}, {c.sample_size // 2}, "
                              f"{c.sample_size // 2}), got {tuple(latents.shape)}")
        return patchify(latents, c.patch_size)

    def heads(self) -> list[nn.Module]:
        dense = self._modules.get("dense_head")
        return [self.head] + ([dense] if dense is not None else [])

    @property
    def low_grid(self) -> tuple[int, int]:
        n = self.grid[0] // 2
        return (n, n)

    @property
    def phase1_steps(self) -> int:
        """K1: 4 x the low-res side (the official cond_scale rule), at most one token per step."""
        return min(self.num_low_tokens, self.config.phase1_steps or 4 * self.low_grid[0])

    def pivot_drop(self, step: int | None) -> float:
        """P(the whole pivot block is replaced by the placeholder) at training step `step`."""
        c = self.config
        progress = 1.0 if step is None else min(1.0, step / max(1, c.pivot_drop_warmup_steps))
        return 1.0 - c.pivot_drop_final * progress

    # ------------------------------------------------------------ training
    def forward(self, tokens: torch.Tensor, buffer: torch.Tensor, generator: torch.Generator | None = None,
                low_tokens: torch.Tensor | None = None, step: int | None = None, return_dict: bool = True):
        """Training forward: dense tokens (B, N_d, d), the low-res tokens (B, N_s, d) of the downsampled images,
        the condition buffer -> MAROutput(loss, parts: loss_low, loss_dense)."""
        if not self.config.pivots:
            return super().forward(tokens, buffer, generator, return_dict)
        if low_tokens is None or low_tokens.shape[1] != self.num_low_tokens:
            raise GenlabError(f"Hi-MAR trains on {self.num_low_tokens} low-res tokens per image too (low_tokens)")
        B, Nd, _ = tokens.shape
        Ns = self.num_low_tokens
        device = tokens.device
        orders_low = random_orders(B, Ns, generator).to(device)
        orders_dense = random_orders(B, Nd, generator).to(device)
        # phase 1: some low-res tokens masked, every dense one masked
        mask_low = mask_from_order(orders_low, math.ceil(Ns * truncnorm_ratio(generator)))
        mask1 = torch.cat([mask_low, torch.ones(B, Nd, dtype=torch.bool, device=device)], 1)
        z1 = self.backbone(buffer, torch.cat([self.cond_proj(low_tokens), self.z_proj(tokens)], 1), mask1, phase=0)
        z_low = z1[:, :Ns]
        loss_low = self.process.loss(self.head, low_tokens[mask_low], z_low[mask_low], generator)
        # phase 2: pivots where phase 1 masked, the placeholder elsewhere (and everywhere when dropped)
        placeholder = self.cond_proj(self.cond_tokens).expand(B, -1, -1)
        low_in = torch.where(mask_low[..., None], self.cond_z_proj(z_low.detach()), placeholder)
        drop = torch.rand(B, generator=generator).to(device) < self.pivot_drop(step)
        low_in = torch.where(drop[:, None, None], placeholder, low_in)
        mask_dense = mask_from_order(orders_dense, max(1, math.ceil(Nd * cosine_ratio(generator))))
        mask2 = torch.cat([torch.zeros(B, Ns, dtype=torch.bool, device=device), mask_dense], 1)
        z_dense = self.backbone(buffer, torch.cat([low_in, self.z_proj(tokens)], 1), mask2, phase=1)[:, Ns:]
        if self.config.head2 == "dit":  # the whole map, masked or not
            loss_dense = self.process.loss(self.dense_head, tokens, z_dense, generator)
        else:
            loss_dense = self.process.loss(self.dense_head, tokens[mask_dense], z_dense[mask_dense], generator)
        w1, w2 = self.config.loss_weights
        loss = w1 * loss_low + w2 * loss_dense
        out = MAROutput(loss=loss, parts={"loss_low": loss_low.detach(), "loss_dense": loss_dense.detach()})
        return out if return_dict else (loss,)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, buffer: torch.Tensor, null_buffer: torch.Tensor | None, num_steps: int, guidance_scale: float,
               temperature: float, generator: torch.Generator | None = None, head_steps: int | None = None,
               orders: torch.Tensor | None = None, progress=None, callback=None, phase1_guidance: float | None = None,
               head2_steps: int | None = None, low_orders: torch.Tensor | None = None, observe=None,
               return_low: bool = False):
        """Phase 1 (`sample_pivots`: K1 steps, MLP head, CFG `phase1_guidance` (default guidance_scale) ramped over
        N_s), then phase 2 (`sample_dense`: `num_steps` steps, the DiT head with clamping, CFG `guidance_scale`
        ramped over N_d). Returns the dense tokens (B, N_d, d); with return_low also (low tokens, pivots).
        observe(phase, step, info) sees every step (and every reverse step of the DiT head)."""
        if not self.config.pivots:
            return super().sample(buffer, null_buffer, num_steps, guidance_scale, temperature, generator, head_steps,
                                  orders, progress, callback)
        w1 = guidance_scale if phase1_guidance is None else phase1_guidance
        total = self.phase1_steps + num_steps
        ticks = iter(progress(range(total)) if progress is not None else range(total))
        low, pivots = self.sample_pivots(buffer, null_buffer, w1, temperature, generator, head_steps, low_orders,
                                         ticks, observe)
        dense = self.sample_dense(pivots, buffer, null_buffer, num_steps, guidance_scale, temperature, generator,
                                  head2_steps, orders, ticks, callback, observe)
        return (dense, low, pivots) if return_low else dense

    @torch.no_grad()
    def sample_pivots(self, buffer, null_buffer, guidance_scale: float, temperature: float, generator=None,
                      head_steps: int | None = None, low_orders=None, ticks=None, observe=None):
        """Phase 1: the low-res tokens (B, N_s, d) and the pivots (B, N_s, D_dec): each position's decoder state
        at the step it is revealed, from the conditional rows under CFG (phase 2 uses them for both halves)."""
        B, Nd, Ns, d = buffer.shape[0], self.num_tokens, self.num_low_tokens, self.token_dim
        device = buffer.device
        cfg = guidance_scale != 1.0 and null_buffer is not None
        cond = torch.cat([null_buffer, buffer]) if cfg else buffer
        head_steps = head_steps or self.config.head_steps
        low_orders = random_orders(B, Ns, generator).to(device) if low_orders is None else low_orders
        low = torch.zeros(B, Ns, d, device=device)
        mask = torch.ones(B, Ns, dtype=torch.bool, device=device)
        pivots = torch.zeros(B, Ns, self.backbone.decoder_embed.out_features, device=device)
        dense_blank = self.z_proj(torch.zeros(B, Nd, d, device=device))  # fully masked in phase 1
        dense_masked = torch.ones(B, Nd, dtype=torch.bool, device=device)
        masked = Ns
        for step, count in enumerate(reveal_counts(Ns, self.phase1_steps)):
            if ticks is not None:
                next(ticks, None)
            still = masked - count
            parts = torch.cat([self.cond_proj(low), dense_blank], 1)
            full_mask = torch.cat([mask, dense_masked], 1)
            z = self.backbone(cond, _twice(parts, cfg), _twice(full_mask, cfg), phase=0)[:, :Ns]
            reveal = mask & ~mask_from_order(low_orders, still)
            pivots[reveal] = (z[B:] if cfg else z)[reveal]
            z_sel = torch.cat([z[:B][reveal], z[B:][reveal]]) if cfg else z[reveal]
            scale = linear_cfg(guidance_scale, Ns, still) if cfg else 1.0
            low[reveal] = self.process.sample_tokens(self.head, z_sel, head_steps, temperature, scale, generator,
                                                     token_dim=d)
            mask, masked = mask & ~reveal, still
            if observe is not None:
                observe(0, step, {"revealed": reveal, "low": low.clone(), "scale": scale})
        return low, pivots

    @torch.no_grad()
    def sample_dense(self, pivots, buffer, null_buffer, num_steps: int, guidance_scale: float, temperature: float,
                     generator=None, head2_steps: int | None = None, orders=None, ticks=None, callback=None,
                     observe=None):
        """Phase 2: the dense tokens (B, N_d, d) from the pivots alone (the sampled low-res tokens are not an input).
        With the DiT head every step denoises the whole map, the revealed tokens clamped, and writes its output to
        every still-masked position; only the positions revealed in the step become visible to the encoder."""
        B, Nd, Ns, d = buffer.shape[0], self.num_tokens, self.num_low_tokens, self.token_dim
        device = buffer.device
        cfg = guidance_scale != 1.0 and null_buffer is not None
        cond = torch.cat([null_buffer, buffer]) if cfg else buffer
        head2_steps = head2_steps or self.config.head2_steps
        orders = random_orders(B, Nd, generator).to(device) if orders is None else orders
        low_in = self.cond_z_proj(pivots)
        dense = torch.zeros(B, Nd, d, device=device)
        mask = torch.ones(B, Nd, dtype=torch.bool, device=device)
        visible_low = torch.zeros(B, Ns, dtype=torch.bool, device=device)
        masked = Nd
        for step, count in enumerate(reveal_counts(Nd, num_steps)):
            if ticks is not None:
                next(ticks, None)
            still = masked - count
            parts = torch.cat([low_in, self.z_proj(dense)], 1)
            full_mask = torch.cat([visible_low, mask], 1)
            z = self.backbone(cond, _twice(parts, cfg), _twice(full_mask, cfg), phase=1)[:, Ns:]
            reveal = mask & ~mask_from_order(orders, still)
            scale = linear_cfg(guidance_scale, Nd, still) if cfg else 1.0
            if self.config.head2 == "dit":
                watch = None
                if observe is not None:
                    def watch(i, t, x, s=step, known=dense.clone(), known_mask=~mask):
                        observe(1, s, {"head_step": i, "t": t, "x": x.clone(), "known": known,
                                       "known_mask": known_mask})
                out = self.process.sample_tokens(self.dense_head, z, head2_steps, temperature, scale, generator,
                                                 known=dense, known_mask=~mask, token_dim=d, observe=watch)
                dense = torch.where(mask[..., None], out, dense)  # every still-masked position gets the output
            else:
                z_sel = torch.cat([z[:B][reveal], z[B:][reveal]]) if cfg else z[reveal]
                dense[reveal] = self.process.sample_tokens(self.dense_head, z_sel, head2_steps, temperature, scale,
                                                           generator, token_dim=d)
            mask, masked = mask & ~reveal, still
            if callback is not None:
                callback(step, ~mask, dense.clone())
            if observe is not None:
                observe(1, step, {"revealed": reveal, "dense": dense.clone(), "scale": scale})
        return dense


def _twice(t: torch.Tensor, on: bool) -> torch.Tensor:
    """[t ; t] for a CFG batch."""
    return torch.cat([t, t]) if on else t
