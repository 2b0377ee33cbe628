"""MAR: autoregressive image generation without vector quantization (Li et al., 2024), at CPU scale.

Continuous tokens (patches of a continuous tokenizer's latent) are generated in a random order over K steps by an
MAE-style bidirectional encoder-decoder; a small per-token MLP diffusion head samples each revealed token from the
decoder's hidden state z_i.

* Sequence: [buffer | N tokens]. The buffer (`buffer_size` slots) holds the condition: the class embedding
  repeated (or the learned null `fake_latent` for "no class"), or projected text tokens for text conditioning.
* Encoder: z_proj(tokens) + learned positions -> LayerNorm -> the masked positions are dropped (MAE: attention over
  the visible ones only, no attention mask) -> ViT blocks -> LayerNorm.
* Decoder: decoder_embed, scattered back to full length with the mask token at masked positions, + positions,
  ViT blocks, LayerNorm, the buffer dropped, + the diffusion positions -> z (B, N, D_dec).
* Training (`forward`): one random order per sample, one truncated-normal mask ratio per batch (ceil(N r) masked),
  the head's ε-MSE on the masked tokens only (repeated `diffusion_batch_mul` times with fresh noise).
* Sampling (`sample`): the cosine reveal schedule over K steps; at each step a full bidirectional pass over the
  visible tokens, then the head samples the revealed ones, CFG per token with MAR's linear ramp and shared noise.

The backbone pieces take a `phase` and a token layout so that Hi-MAR (himar.py) runs two phases on the same
machinery; MAR is phase 0 with a single token part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from ..errors import GenlabError, check_positive_int
from ..layers import ViTBlock, patchify, unpatchify
from ..layers.diffusion_heads import DiffusionProcess, MLPDiffusionHead
from ..modeling import ClassConditionalMixin, GenlabModel, PresetMixin
from ..schedulers.masking import linear_cfg, mask_from_order, random_orders, reveal_counts, truncnorm_ratio

MAR_PRESETS = {
    # test: unit tests; tiny: the shipped CPU models; B/L/H: the paper's sizes (enc/dec depth, width, heads)
    "test": dict(hidden_size=32, encoder_depth=1, decoder_depth=1, num_heads=2, head_width=32, head_depth=1),
    "tiny": dict(hidden_size=128, encoder_depth=2, decoder_depth=2, num_heads=4, head_width=128, head_depth=3),
    "B": dict(hidden_size=768, encoder_depth=12, decoder_depth=12, num_heads=12, head_width=1024, head_depth=6),
    "L": dict(hidden_size=1024, encoder_depth=16, decoder_depth=16, num_heads=16, head_width=1280, head_depth=8),
    "H": dict(hidden_size=1280, encoder_depth=20, decoder_depth=20, num_heads=16, head_width=1536, head_depth=12),
}


@dataclass
class MAROutput(BaseOutput):
    """loss: the training loss; parts: its named terms (detached) for logging."""

    loss: torch.Tensor
    parts: dict


class MaskedARBackbone(nn.Module):
    """The encoder-decoder both MAR and Hi-MAR run: learned positions and mask tokens per phase, ViT blocks (scale-
    aware when num_phases > 0), MAE-style dropping of masked positions."""

    def __init__(self, length: int, buffer_size: int, hidden_size: int, decoder_hidden_size: int, encoder_depth: int,
                 decoder_depth: int, num_heads: int, mlp_ratio: float, num_phases: int, per_position_mask: bool,
                 dropout: float):
        super().__init__()
        phases = max(1, num_phases)
        self.buffer_size, self.length, self.num_phases = buffer_size, length, num_phases
        self.encoder_pos = nn.Parameter(torch.zeros(phases, buffer_size + length, hidden_size))
        self.input_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.encoder_blocks = nn.ModuleList(ViTBlock(hidden_size, num_heads, mlp_ratio, num_phases, dropout)
                                            for _ in range(encoder_depth))
        self.encoder_norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.decoder_embed = nn.Linear(hidden_size, decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(phases, length if per_position_mask else 1, decoder_hidden_size))
        self.decoder_pos = nn.Parameter(torch.zeros(phases, buffer_size + length, decoder_hidden_size))
        self.decoder_blocks = nn.ModuleList(ViTBlock(decoder_hidden_size, num_heads, mlp_ratio, num_phases, dropout)
                                            for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_hidden_size, eps=1e-6)
        self.diffusion_pos = nn.Parameter(torch.zeros(1, length, decoder_hidden_size))
        if num_phases:  # one phase embedding + MLP per stack, mapped per block by its (a, b)
            self.phase_embed = nn.Embedding(num_phases, hidden_size)
            self.encoder_phase = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 4 * hidden_size))
            self.decoder_phase = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 4 * decoder_hidden_size))
        for p in (self.encoder_pos, self.mask_token, self.decoder_pos, self.diffusion_pos):
            nn.init.normal_(p, std=0.02)

    def phase_vectors(self, phase: int):
        if not self.num_phases:
            return None, None
        e = self.phase_embed(torch.tensor([[phase]], device=self.phase_embed.weight.device))  # (1, 1, D)
        return self.encoder_phase(e), self.decoder_phase(e)

    def forward(self, buffer: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, phase: int = 0) -> torch.Tensor:
        """buffer (B, b, D) condition slots; tokens (B, L, D) projected tokens; mask (B, L) bool, True = masked (the
        same count in every row). Returns the decoder states z (B, L, D_dec) at every position."""
        B, L, _ = tokens.shape
        counts = mask.sum(1)
        if bool((counts != counts[0]).any()):
            raise GenlabError("every sample of a batch must have the same number of masked tokens")
        enc_phase, dec_phase = self.phase_vectors(phase)
        x = self.input_norm(torch.cat([buffer, tokens], 1) + self.encoder_pos[phase])
        keep = torch.cat([torch.ones(B, self.buffer_size, dtype=torch.bool, device=mask.device), ~mask], 1)
        h = x[keep].reshape(B, -1, x.shape[-1])  # MAE: the encoder never sees the masked positions
        for block in self.encoder_blocks:
            h = block(h, enc_phase, phase)
        h = self.decoder_embed(self.encoder_norm(h))
        full = self.mask_token[phase].expand(B, L, -1)
        full = torch.cat([torch.zeros(B, self.buffer_size, h.shape[-1], dtype=h.dtype, device=h.device), full], 1)
        full = full.to(h.dtype).masked_scatter(keep[..., None], h)
        full = full + self.decoder_pos[phase]
        for block in self.decoder_blocks:
            full = block(full, dec_phase, phase)
        return self.decoder_norm(full)[:, self.buffer_size:] + self.diffusion_pos


class MARModel(PresetMixin, ClassConditionalMixin, GenlabModel):
    """Continuous-token masked autoregression with an MLP diffusion head; see the module doc.

    Tokens are p x p patches of a latent (B, in_channels, sample_size, sample_size): token_dim = in_channels p^2.
    Conditioned on a class (num_classes; id num_classes = no class) or, with text_dim, on text token states."""
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("ViTBlock", "ResidualMLPBlock")

    PRESETS, PRESET_FAMILY = MAR_PRESETS, "MAR"
    num_phases = 0

    @register_to_config
    def __init__(self, sample_size: int = 8, in_channels: int = 4, patch_size: int = 1, hidden_size: int = 128,
                 decoder_hidden_size: int | None = None, encoder_depth: int = 2, decoder_depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, buffer_size: int = 4, num_classes: int = 10,
                 class_names: list | None = None, text_dim: int | None = None, head_width: int = 128,
                 head_depth: int = 3, head_steps: int = 50, diffusion_batch_mul: int = 1, dropout: float = 0.0):
        super().__init__()
        for value, name in [(sample_size, "sample_size"), (in_channels, "in_channels"), (patch_size, "patch_size"),
                            (buffer_size, "buffer_size"), (head_steps, "head_steps"),
                            (diffusion_batch_mul, "diffusion_batch_mul"), (num_classes, "num_classes")]:
            check_positive_int(value, name)
        if sample_size % patch_size:
            raise GenlabError(f"sample_size {sample_size} is not divisible by patch_size {patch_size}")
        if hidden_size % num_heads or (decoder_hidden_size or hidden_size) % num_heads:
            raise GenlabError(f"hidden sizes must be divisible by num_heads {num_heads}")
        if class_names is not None and len(class_names) != num_classes:
            raise GenlabError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
        d_dec = decoder_hidden_size or hidden_size
        self.token_dim = in_channels * patch_size ** 2
        self.z_proj = nn.Linear(self.token_dim, hidden_size)
        self.fake_latent = nn.Parameter(torch.zeros(1, hidden_size))  # the "no condition" buffer (CFG)
        if text_dim:
            self.text_proj = nn.Linear(text_dim, hidden_size)
            self.text_pad = nn.Parameter(torch.zeros(1, hidden_size))
        else:
            self.class_emb = nn.Embedding(num_classes, hidden_size)
        self.build_backbone(d_dec)
        self.head = self.make_head(d_dec)
        self.init_weights()

    # ------------------------------------------------------------ structure
    def build_backbone(self, d_dec: int):
        c = self.config
        self.backbone = MaskedARBackbone(self.num_tokens, c.buffer_size, c.hidden_size, d_dec, c.encoder_depth,
                                         c.decoder_depth, c.num_heads, c.mlp_ratio, self.num_phases,
                                         per_position_mask=self.num_phases > 0, dropout=c.dropout)

    def make_head(self, d_dec: int) -> nn.Module:
        """The per-token head on the decoder states (TokenBridge: a channel-AR head over quantized tokens)."""
        c = self.config
        return MLPDiffusionHead(self.token_dim, d_dec, c.head_width, c.head_depth)

    def init_weights(self):
        """xavier for the transformer's Linears, N(0, 0.02) for embeddings and the null condition (MAR's init);
        the heads keep their zero-initialised outputs."""
        heads = {id(m) for head in self.heads() for m in head.modules()}
        for m in self.modules():
            if id(m) in heads:
                continue
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.normal_(self.fake_latent, std=0.02)
        if getattr(self, "text_pad", None) is not None:
            nn.init.normal_(self.text_pad, std=0.02)

    def heads(self) -> list[nn.Module]:
        return [self.head]

    @property
    def grid(self) -> tuple[int, int]:
        n = self.config.sample_size // self.config.patch_size
        return (n, n)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def conditioning(self) -> str:
        return "text" if self.config.text_dim else "class"

    @property
    def process(self) -> DiffusionProcess:
        cache = self.__dict__.setdefault("_process", {})
        if "p" not in cache:
            cache["p"] = DiffusionProcess()
        return cache["p"]

    # ------------------------------------------------------------ tokens and conditions
    def tokens_from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        c = self.config
        if latents.dim() != 4 or latents.shape[1] != c.in_channels or latents.shape[-1] != c.sample_size:
            raise GenlabError(f"{type(self).__name__} expects latents (B, {c.in_channels}, {c.sample_size}, "
                              f"{c.sample_size}), got {tuple(latents.shape)}")
        return patchify(latents, c.patch_size)

    def latents_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        c = self.config
        return unpatchify(tokens, c.patch_size, c.sample_size, c.sample_size)

    def condition(self, class_labels=None, text=None, text_mask=None, drop=None) -> torch.Tensor:
        """The (B, buffer_size, D) buffer: class embeddings (id num_classes = no class) or projected text token
        states (B, L, text_dim) with their mask, the first buffer_size of them, padded; rows with `drop` True (and
        class id num_classes) get the null condition."""
        b = self.config.buffer_size
        if self.conditioning == "class":
            if class_labels is None:
                raise GenlabError("this model is class-conditional: pass class_labels")
            labels = class_labels.long()
            null = labels == self.null_class
            emb = self.class_emb(labels.clamp(max=self.config.num_classes - 1))
            emb = torch.where(null[:, None], self.fake_latent.expand_as(emb), emb)
            buffer = emb[:, None].expand(-1, b, -1)
        else:
            if text is None:
                raise GenlabError("this model is text-conditioned: pass text token states")
            B = text.shape[0]
            states = self.text_proj(text[:, :b].to(self.z_proj.weight.dtype))
            valid = (text_mask[:, :b] if text_mask is not None else torch.ones(states.shape[:2], dtype=torch.bool,
                                                                                 device=states.device))
            states = torch.where(valid[..., None], states, self.text_pad.expand_as(states))
            if states.shape[1] < b:
                states = torch.cat([states, self.text_pad.expand(B, b - states.shape[1], -1)], 1)
            buffer = states
            null = drop if drop is not None else torch.zeros(B, dtype=torch.bool, device=states.device)
        if drop is not None and self.conditioning == "class":
            null = null | drop
        return torch.where(null[:, None, None], self.fake_latent[None].expand_as(buffer), buffer)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        return self.fake_latent[None].expand(batch_size, self.config.buffer_size, -1)

    # ------------------------------------------------------------ training
    def decoder_states(self, tokens: torch.Tensor, buffer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(buffer, self.z_proj(tokens), mask, phase=0)

    def forward(self, tokens: torch.Tensor, buffer: torch.Tensor, generator: torch.Generator | None = None,
                return_dict: bool = True):
        """Training forward: tokens (B, N, token_dim), buffer (B, b, D) from `condition` -> MAROutput(loss)."""
        B, N, _ = tokens.shape
        orders = random_orders(B, N, generator).to(tokens.device)
        num_masked = math.ceil(N * truncnorm_ratio(generator))
        mask = mask_from_order(orders, num_masked)
        z = self.decoder_states(self.backbone_inputs(tokens), buffer, mask)
        loss = self.head_loss(tokens[mask], z[mask], generator)
        out = MAROutput(loss=loss, parts={"loss_head": loss.detach()})
        return out if return_dict else (loss,)

    def backbone_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the encoder sees of the clean tokens in training (TokenBridge: their dequantized values)."""
        return tokens

    def head_loss(self, targets: torch.Tensor, z: torch.Tensor, generator=None) -> torch.Tensor:
        """The head's loss on the masked tokens (M, token_dim) given their decoder states (M, D_dec)."""
        k = self.config.diffusion_batch_mul
        return self.process.loss(self.head, targets.repeat(k, 1), z.repeat(k, 1), generator)

    def sample_head(self, z: torch.Tensor, cfg: float, temperature: float, generator, head_steps: int):
        """Tokens (M, token_dim) for decoder states z: (M, D_dec), or [uncond ; cond] (2M rows) when cfg != 1 (the
        diffusion head mixes the two noise predictions at every step of its chain)."""
        return self.process.sample_tokens(self.head, z, head_steps, temperature, cfg, generator,
                                          token_dim=self.token_dim)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, buffer: torch.Tensor, null_buffer: torch.Tensor | None, num_steps: int, guidance_scale: float,
               temperature: float, generator: torch.Generator | None = None, head_steps: int | None = None,
               orders: torch.Tensor | None = None, progress=None, callback=None) -> torch.Tensor:
        """Generate tokens (B, N, token_dim) in `num_steps` reveal steps. CFG (guidance_scale != 1, null_buffer
        given) doubles the batch as [uncond ; cond] and follows the linear ramp. callback(step, revealed (B, N)
        bool, tokens) after every step."""
        B, N, d = buffer.shape[0], self.num_tokens, self.token_dim
        head_steps = head_steps or self.config.get("head_steps")  # None for heads without a chain (TokenBridge)
        counts = reveal_counts(N, num_steps)
        orders = random_orders(B, N, generator).to(buffer.device) if orders is None else orders
        cfg = guidance_scale != 1.0
        cond = torch.cat([null_buffer, buffer]) if cfg else buffer
        tokens = torch.zeros(B, N, d, device=buffer.device)
        mask = torch.ones(B, N, dtype=torch.bool, device=buffer.device)
        masked = N
        steps = range(len(counts))
        for step in (progress(steps) if progress is not None else steps):
            still = masked - counts[step]
            both = (lambda t: torch.cat([t, t])) if cfg else (lambda t: t)
            z = self.decoder_states(both(tokens), cond, both(mask))
            reveal = mask & ~mask_from_order(orders, still)
            z_sel = torch.cat([z[:B][reveal], z[B:][reveal]]) if cfg else z[reveal]
            scale = linear_cfg(guidance_scale, N, still) if cfg else 1.0
            tokens[reveal] = self.sample_head(z_sel, scale, temperature, generator, head_steps)
            mask = mask & ~reveal
            masked = still
            if callback is not None:
                callback(step, ~mask, tokens.clone())
        return tokens
