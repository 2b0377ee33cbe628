"""DDT: Decoupled Diffusion Transformer (Wang et al., arXiv 2504.05741), a DiT split into two stacks.

* condition encoder: E adaLN blocks on the tokens of its own patch embedder (`s_embedder`), modulated per sample by
  c = SiLU(t_emb + y_emb); its output h_E becomes the token-wise self-condition z = SiLU(t_emb + h_E) (no final norm);
* velocity decoder: D adaLN blocks on the tokens of a second patch embedder (`x_embedder`) of the same noisy input,
  modulated **per token** by z, followed by the final layer (also modulated per token by z).

The decoder never sees the label and sees t only through z, so a z reused from an earlier sampling step carries that
step's t: this is the method (encoder sharing, see genlab.acceleration.sharing) as the official code runs it. A
caller may instead pass back the encoder state h_E (`encoder_state`), and z is then rebuilt with the current t
("re-timed" sharing, genlab's option: it costs one addition and cuts the background speckle of long reuse spans by
a third or more; bench/ddt.md). Encoder tokens never enter the decoder's token stream; the two stacks are coupled only through adaLN.

State-dict keys follow the official code (`blocks.i` numbers the encoder blocks first, then the decoder blocks), so
released checkpoints map one to one. Blocks keep PyTorch's default init for their adaLN projections (only the final
layer is zeroed, so the model outputs exactly 0 at init); there is no global xavier pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from ..errors import GenlabError
from ..layers import AdaLNBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, unpatchify
from ..modeling import GenlabModel
from .patch_transformer import PatchTransformerMixin, check_patch_transformer_config

DDT_PRESETS = {
    # test/tiny/small: genlab's CPU presets; B/L/XL: the paper's splits (App. A), 130.26M/457.65M/674.65M
    # parameters at patch 2 on a 4-channel latent with 1000 classes.
    "test": dict(hidden_size=64, num_encoder_layers=3, num_decoder_layers=1, num_heads=4),
    "tiny": dict(hidden_size=192, num_encoder_layers=6, num_decoder_layers=2, num_heads=6),
    "small": dict(hidden_size=256, num_encoder_layers=8, num_decoder_layers=4, num_heads=8),
    "B": dict(hidden_size=768, num_encoder_layers=8, num_decoder_layers=4, num_heads=12),
    "L": dict(hidden_size=1024, num_encoder_layers=20, num_decoder_layers=4, num_heads=16),
    "XL": dict(hidden_size=1152, num_encoder_layers=22, num_decoder_layers=6, num_heads=16),
}


@dataclass
class DDTOutput(BaseOutput):
    """sample: the velocity (B, C, H, W); z: the self-condition (B, N, D) the decoder used (pass it back to skip the
    encoder); aligned: the projected encoder features (B, N, repa_dim) when called with return_alignment=True;
    encoder_state: the encoder's output h_E before t is added (pass it back to skip the encoder with z re-timed),
    None when the call was given z."""

    sample: torch.Tensor
    z: torch.Tensor
    aligned: torch.Tensor | None = None
    encoder_state: torch.Tensor | None = None

    def to_tuple(self) -> tuple:
        """(sample, z) as the official forward returns (x, s), plus aligned when computed; encoder_state is a field
        only, so the tuple's length does not depend on whether the encoder ran."""
        return (self.sample, self.z) if self.aligned is None else (self.sample, self.z, self.aligned)


class DDTModel(PatchTransformerMixin, GenlabModel):
    """forward(x_t, t, class_labels, z=None) -> DDTOutput(sample, z). Pass the z of an earlier call to skip the
    encoder."""

    PRESETS, PRESET_FAMILY = DDT_PRESETS, "DDT"

    @register_to_config
    def __init__(self, sample_size: int = 32, in_channels: int = 1, patch_size: int = 4, hidden_size: int = 192,
                 num_encoder_layers: int = 6, num_decoder_layers: int = 2, num_heads: int = 6, mlp_ratio: float = 4.0,
                 num_classes: int = 10, class_names: list | None = None, rope_span: float | None = 16.0,
                 rope_theta: float = 10000.0, time_max_period: float = 10.0, repa_layer: int | None = None,
                 repa_dim: int | None = None):
        super().__init__()
        check_patch_transformer_config(sample_size, patch_size, hidden_size, num_heads, num_classes, class_names)
        if num_encoder_layers < 1 or num_decoder_layers < 1:
            raise GenlabError(f"DDT needs at least one encoder and one decoder block, got "
                              f"{num_encoder_layers}En{num_decoder_layers}De")
        if (repa_layer is None) != (repa_dim is None):
            raise GenlabError("REPA alignment needs both repa_layer (encoder block) and repa_dim (teacher features)")
        if repa_layer is not None and not (isinstance(repa_layer, int) and 1 <= repa_layer <= num_encoder_layers):
            raise GenlabError(f"repa_layer is 1-indexed and must lie in the encoder (1..{num_encoder_layers}), "
                              f"got {repa_layer!r}")
        patch_features = in_channels * patch_size * patch_size
        self.s_embedder = PatchEmbed(in_channels, patch_size, hidden_size)  # encoder input
        self.x_embedder = PatchEmbed(in_channels, patch_size, hidden_size)  # decoder input: same patches, own weights
        self.t_embedder = TimestepEmbedder(hidden_size, max_period=time_max_period)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        # One list, encoder blocks first: the official checkpoint layout.
        self.blocks = nn.ModuleList(
            AdaLNBlock(hidden_size, num_heads, mlp_ratio, zero_init=False)
            for _ in range(num_encoder_layers + num_decoder_layers)
        )
        self.final_layer = FinalLayer(hidden_size, patch_features)
        # REPA (training only): MLP from the hidden state after encoder block `repa_layer` to the teacher's features.
        self.repa_projector = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size), nn.SiLU(),
            nn.Linear(hidden_size, repa_dim)) if repa_layer is not None else None

    @property
    def encoder_blocks(self) -> list[nn.Module]:
        return list(self.blocks[: self.config.num_encoder_layers])

    @property
    def decoder_blocks(self) -> list[nn.Module]:
        return list(self.blocks[self.config.num_encoder_layers:])

    def encode(self, x: torch.Tensor, t_emb: torch.Tensor, class_labels: torch.Tensor, rope: torch.Tensor,
               keep: int | None = None):
        """Condition encoder: noisy input -> encoder state h_E (B, N, D) (`self_condition` turns it into z). t_emb is
        (B, 1, D). With keep = i (1-indexed) it returns (h_E, hidden state after encoder block i)."""
        c = F.silu(t_emb + self.y_embedder(class_labels)[:, None])  # per sample
        h = self.s_embedder(x)
        kept = None
        for i, block in enumerate(self.encoder_blocks, start=1):
            h = block(h, c, rope)
            if i == keep:
                kept = h
        return h if keep is None else (h, kept)

    @staticmethod
    def self_condition(t_emb: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """z = SiLU(t_emb + h_E): no norm on h_E (official)."""
        return F.silu(t_emb + h)

    def decode(self, x: torch.Tensor, z: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """Velocity decoder: noisy input and per-token condition z -> velocity (B, C, H, W)."""
        H, W = x.shape[-2:]
        h = self.x_embedder(x)
        for block in self.decoder_blocks:
            h = block(h, z, rope)
        return unpatchify(self.final_layer(h, z), self.config.patch_size, H, W)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor,
                z: torch.Tensor | None = None, return_alignment: bool = False, return_dict: bool = True,
                encoder_state: torch.Tensor | None = None):
        """x: (B, C, H, W) noisy input x_t; t: (B,) in [0, 1] (0 = noise); class_labels: (B,) long (num_classes =
        no class); z: (B, N, D) self-condition from an earlier call, or None to run the encoder; encoder_state:
        (B, N, D) h_E from an earlier call instead of z, to skip the encoder with z rebuilt at this call's t.
        Returns DDTOutput(sample=velocity shaped like x, z, encoder_state) ((sample, z) with return_dict=False). With z
        given, t and class_labels are not used; with encoder_state given, class_labels are not used.
        return_alignment=True (training with REPA, needs repa_layer) also returns the projected (B, N, repa_dim)
        features of encoder block repa_layer as `aligned`, computed inside forward so DDP sees the projector's use."""
        self.check_inputs(x, t, class_labels)
        p = self.config.patch_size
        gh, gw = x.shape[2] // p, x.shape[3] // p
        rope = self.rope(gh, gw)
        if z is not None and encoder_state is not None:
            raise GenlabError("pass z or encoder_state to skip the encoder, not both")
        if return_alignment and (z is not None or encoder_state is not None):
            raise GenlabError("return_alignment runs the encoder: do not pass z or encoder_state with it")
        expected = (x.shape[0], gh * gw, self.config.hidden_size)
        for name, given in (("z", z), ("encoder_state", encoder_state)):
            if given is not None and given.shape != expected:
                raise GenlabError(f"{name} must have shape {expected} for this x, got {tuple(given.shape)}")
        aligned = None
        if z is None:
            t_emb = self.t_embedder(t)[:, None]
            if return_alignment:
                if self.repa_projector is None:
                    raise GenlabError("this DDTModel has no REPA projector: build it with repa_layer and repa_dim")
                encoder_state, kept = self.encode(x, t_emb, class_labels, rope, keep=self.config.repa_layer)
                aligned = self.repa_projector(kept)
            elif encoder_state is None:
                encoder_state = self.encode(x, t_emb, class_labels, rope)
            z = self.self_condition(t_emb, encoder_state)
        out = DDTOutput(sample=self.decode(x, z, rope), z=z, aligned=aligned, encoder_state=encoder_state)
        return out if return_dict else out.to_tuple()
