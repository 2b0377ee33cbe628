"""What the autoregressive token transformers (raster AR, NAR) share: the LlamaGen backbone over
[class token | VQ ids], decoding heads, logit routing/mixing and KV-cached decode steps, as a mixin so that each model
stays one readable file (the sampler is models/sampling.py)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import GenlabError, check_positive_int
from ..layers import KVCache, LabelEmbedder, TransformerBlock, sequence_rope
from ..modeling import ClassConditionalMixin, PresetMixin

TOKEN_TRANSFORMER_PRESETS = {
    # name: (hidden_size, depth, num_heads); NAR adds one extra block per extra axis on top of `depth`
    "test": dict(hidden_size=64, depth=2, num_heads=4),
    "tiny": dict(hidden_size=192, depth=6, num_heads=6),
    "small": dict(hidden_size=256, depth=8, num_heads=8),
    # LlamaGen / NAR sizes (GPT-B .. GPT-XXL; SwiGLU width rounded up to a multiple of 256 as in the official code)
    "B": dict(hidden_size=768, depth=12, num_heads=12, ffn_multiple_of=256),
    "M": dict(hidden_size=1024, depth=18, num_heads=16, ffn_multiple_of=256),
    "L": dict(hidden_size=1024, depth=24, num_heads=16, ffn_multiple_of=256),
    "XL": dict(hidden_size=1280, depth=36, num_heads=20, ffn_multiple_of=256),
    "XXL": dict(hidden_size=1536, depth=48, num_heads=24, ffn_multiple_of=256),
}


def check_token_transformer_config(grid_size, vocab_size: int, hidden_size: int, num_heads: int, num_classes: int,
                                   class_names: list | None, pos_embed: str) -> tuple[int, ...]:
    from ..schedulers.orders import check_grid

    grid = check_grid(tuple(grid_size) if not isinstance(grid_size, int) else grid_size)
    for value, name in [(vocab_size, "vocab_size"), (num_classes, "num_classes"), (num_heads, "num_heads")]:
        check_positive_int(value, name)
    if pos_embed not in ("rope", "learned"):
        raise GenlabError(f"pos_embed must be 'rope' or 'learned', got {pos_embed!r}")
    need = 2 * len(grid) if pos_embed == "rope" else 1
    if hidden_size % num_heads or (hidden_size // num_heads) % need:
        raise GenlabError(f"head dim hidden_size/num_heads = {hidden_size}/{num_heads} must be an integer divisible "
                          f"by {need} ({len(grid)}-D {pos_embed} positions)")
    if class_names is not None and len(class_names) != num_classes:
        raise GenlabError(f"class_names has {len(class_names)} entries but num_classes is {num_classes}")
    return grid


class TokenTransformerMixin(PresetMixin, ClassConditionalMixin):
    """What raster AR (LlamaGen) and NAR share: a class-token prefix, a token embedding, a stack of plain
    TransformerBlocks with 2-D/3-D RoPE (or a learned absolute PE), and decoding heads (RMSNorm + Linear).

    Sequence layout: [class token | grid tokens in raster order], length S = 1 + N; the input is NOT shifted: the
    logit for target token n is read from the hidden state of the tokens it is *routed* from (`routes`), which is
    the previous token for raster AR and the left/upper/earlier neighbours for NAR. A subclass defines its order:
    - `decoding_levels()`: list of (n_k,) raster indices produced per forward pass (cached as `levels`),
    - `decoding_mask()`: (S, S) boolean mask (cached as `attention_mask`),
    - `decoding_routes()`: (src (N, A), valid (N, A)): sequence position whose head-a output predicts token n
      (cached as `routes`),
    - `head_modules()`: A pairs (extra blocks before the head, (norm, linear)); head a's hidden state is head
      a-1's hidden state passed through head a's extra blocks (NAR's chained extra blocks).
    Mixed logits are the mean over valid heads (logit space, before any softmax).
    """
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("TransformerBlock",)

    def block(self) -> TransformerBlock:
        """A new backbone block as the config describes it (trunk and NAR's extra blocks alike)."""
        c = self.config
        return TransformerBlock(c.hidden_size, c.num_heads, c.mlp_ratio, dropout=c.dropout,
                                ffn_multiple_of=c.ffn_multiple_of)

    def build_token_transformer(self, grid):
        """Embeddings, trunk blocks, the first head (`norm`, `output`) and the optional learned PE, from the config."""
        c = self.config
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.cls_embedding = LabelEmbedder(c.num_classes, c.hidden_size)
        self.token_dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(self.block() for _ in range(c.depth))
        self.norm = nn.RMSNorm(c.hidden_size, eps=1e-5)
        self.output = nn.Linear(c.hidden_size, c.vocab_size, bias=False)  # the first (horizontal / next-token) head
        n = math.prod(grid)
        self.abs_pe = nn.Parameter(torch.zeros(1, 1 + n, c.hidden_size)) if c.pos_embed == "learned" else None

    def init_token_transformer_weights(self, zero_heads):
        """N(0, 0.02) for every Linear / Embedding weight (and the learned PE); zero the listed output Linears."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        if self.abs_pe is not None:
            nn.init.normal_(self.abs_pe, std=0.02)
        for linear in zero_heads:
            nn.init.zeros_(linear.weight)

    # ------------------------------------------------------------ geometry
    @property
    def grid(self) -> tuple[int, ...]:
        g = self.config.grid_size
        return (g,) if isinstance(g, int) else tuple(g)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def seq_len(self) -> int:
        return 1 + self.num_tokens

    @property
    def levels(self) -> list[torch.Tensor]:
        return self._cached("levels", self.decoding_levels)

    @property
    def attention_mask(self) -> torch.Tensor:
        return self._cached("mask", self.decoding_mask)

    @property
    def routes(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._cached("routes", self.decoding_routes)

    def rope_table(self) -> torch.Tensor | None:
        if self.config.pos_embed != "rope":
            return None
        head_dim = self.config.hidden_size // self.config.num_heads
        return self._cached("rope", lambda: sequence_rope(self.grid, head_dim, 1, self.config.cond_rope,
                                                          self.config.rope_theta, None))

    # ------------------------------------------------------------ forward pieces
    def check_tokens(self, tokens: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        n, v = self.num_tokens, self.config.vocab_size
        if tokens.dim() >= 2 and tuple(tokens.shape[1:]) == self.grid:
            tokens = tokens.reshape(tokens.shape[0], -1)
        if tokens.dim() != 2 or tokens.shape[1] != n:
            raise GenlabError(f"{type(self).__name__} expects tokens of shape (B, {n}) or (B, *{self.grid}); "
                              f"got {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= v):
            raise GenlabError(f"token ids must lie in [0, {v}), got [{int(tokens.min())}, {int(tokens.max())}]")
        if class_labels.shape != (tokens.shape[0],):
            raise GenlabError(f"class_labels must have shape ({tokens.shape[0]},); got {tuple(class_labels.shape)}")
        if int(class_labels.min()) < 0 or int(class_labels.max()) > self.config.num_classes:
            raise GenlabError(f"class labels must lie in [0, {self.config.num_classes}] ({self.config.num_classes} = "
                              "no class)")
        return tokens

    def embed(self, tokens: torch.Tensor | None, class_labels: torch.Tensor, positions: torch.Tensor):
        """Input embeddings (B, q, D) of sequence positions (q,): position 0 is the class token, position 1 + n
        holds grid token n; `tokens` (B, q') are the ids of the non-class positions, in order."""
        parts = []
        if bool((positions == 0).any()):
            parts.append(self.cls_embedding(class_labels)[:, None])
        if tokens is not None and tokens.shape[1]:
            parts.append(self.tok_embeddings(tokens))
        x = torch.cat(parts, dim=1)
        if self.abs_pe is not None:
            x = x + self.abs_pe[:, positions]
        return self.token_dropout(x)

    def head_hidden_states(self, x, positions, mask, caches=None) -> list[torch.Tensor]:
        """Run the trunk and the chained extra blocks: one (B, q, D) hidden state per head."""
        rope = self.rope_table()
        rope = rope[positions.cpu()] if rope is not None else None
        caches = iter(caches) if caches is not None else None

        def run(blocks, h):
            for block in blocks:
                h = block(h, rope, mask, next(caches) if caches is not None else None, positions)
            return h

        x = run(self.layers, x)
        hidden = []
        for extra_blocks, _ in self.head_modules():
            x = run(extra_blocks, x)
            hidden.append(x)
        return hidden

    def head_logits(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        """(B, A, q, V) logits of every head."""
        return torch.stack([out(norm(h)) for h, (_, (norm, out)) in zip(hidden, self.head_modules())], dim=1)

    def all_blocks(self) -> list[nn.Module]:
        return list(self.layers) + [b for blocks, _ in self.head_modules() for b in blocks]

    def new_state(self, batch_size: int) -> list[KVCache]:
        """The decoding state the sampler carries between steps without looking into it: one KV cache per block."""
        return KVCache.for_blocks(self.all_blocks(), batch_size, self.seq_len, self.dtype, self.device)

    def mix(self, logits: torch.Tensor, src: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """logits (B, A, q, V) at q input slots; src (t, A) slot indices; valid (t, A) -> (B, t, V) mean over
        the valid heads."""
        a = torch.arange(logits.shape[1], device=logits.device).expand_as(src)
        picked = logits[:, a, src.clamp(min=0)]  # (B, t, A, V)
        w = valid.to(logits.dtype)
        return (picked * w[None, :, :, None]).sum(2) / w.sum(1)[None, :, None]

    def full_logits(self, tokens, class_labels, mask=None, heads=None) -> torch.Tensor:
        """Teacher-forced (B, N, V) mixed logits with an optional mask override and head subset (ablations)."""
        tokens = self.check_tokens(tokens, class_labels)
        positions = torch.arange(self.seq_len, device=tokens.device)
        mask = self.attention_mask.to(tokens.device) if mask is None else mask.to(tokens.device)
        hidden = self.head_hidden_states(self.embed(tokens, class_labels, positions), positions, mask)
        src, valid = (t.to(tokens.device) for t in self.routes)
        if heads is not None:
            keep = torch.zeros_like(valid)
            keep[:, list(heads)] = True
            valid = valid & keep
        return self.mix(self.head_logits(hidden), src, valid)

    def forward(self, tokens: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        """Training forward. tokens (B, N) raster ids or (B, *grid), class_labels (B,) (num_classes = no class)
        -> (B, N, V) logits aligned with `tokens` (cross-entropy against `tokens` itself, unshifted)."""
        return self.full_logits(tokens, class_labels)

    def decode_step(self, tokens, positions, class_labels, state, targets) -> torch.Tensor:
        """One cached forward: feed the sequence `positions` (q,) (0 = class token; `tokens` (B, q') the ids of the
        others) and return the mixed logits (B, t, V) of the raster `targets` (t,), all routed from these inputs.
        `state` is what `new_state` made; this step's keys and values are appended to it."""
        caches = state
        device = class_labels.device
        positions = positions.to(device)
        # The caches hold the earlier steps' entries in writing order; the keys of this step are the filled ones
        # plus these positions. Orders whose levels see every earlier level and their own level whole (raster,
        # NAR rings) give an all-True mask here, and SDPA runs faster without one.
        keys = torch.cat([caches[0].filled_positions, positions])
        mask = self.attention_mask.to(device)[positions][:, keys]
        mask = None if bool(mask.all()) else mask
        hidden = self.head_hidden_states(self.embed(tokens, class_labels, positions), positions, mask, caches)
        src, valid = (t[targets].to(device) for t in self.routes)
        slot = torch.full((self.seq_len,), -1, dtype=torch.long, device=device)
        slot[positions] = torch.arange(len(positions), device=device)
        slots = slot[src]
        if bool((valid & (slots < 0)).any()):
            raise GenlabError("decoding order error: a target is routed from a token that is not in this step")
        return self.mix(self.head_logits(hidden), slots, valid)
