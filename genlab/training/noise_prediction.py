"""noise_prediction: the DDPM objective of diffusers' UNets (Faster Diffusion's base models) — predict the noise e
added at a uniformly drawn timestep of the scheduler's 1000-step chain, with the condition dropped for CFG.

The condition follows the UNet: class labels (UNet2DModel with class embeddings; the last id is the null class) or
caption states from the frozen MiniLM encoder as cross-attention context (the empty caption is the null one, as in
Stable Diffusion). Clips (batch["video"], (B, T, C, H, W)) are coded frame by frame and given to a UNet3D as
(B, C, T, h, w).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError
from .objectives import encode_latents, randn_like, unwrap


class NoisePredictionObjective(nn.Module):
    def __init__(self, scheduler, tokenizer: nn.Module, text_encoder: nn.Module | None = None,
                 label_dropout: float = 0.1, input_key: str = "pixel_values"):
        super().__init__()
        from ..text_encoder import TextEmbeddingCache

        if scheduler.config.prediction_type != "epsilon":
            raise GenlabError(f"noise_prediction trains eps-prediction; the scheduler predicts "
                              f"{scheduler.config.prediction_type!r}")
        self.scheduler = scheduler
        self.tokenizer = tokenizer.requires_grad_(False).eval()
        self.text_encoder = text_encoder.requires_grad_(False).eval() if text_encoder is not None else None
        self.text = TextEmbeddingCache(self.text_encoder) if text_encoder is not None else None
        self.label_dropout = label_dropout
        self.input_key = input_key

    def latents(self, x: torch.Tensor, generator) -> torch.Tensor:
        with torch.no_grad():
            if x.dim() == 5:  # clips: per-frame codes, channels before time as UNet3D takes them
                b, t = x.shape[:2]
                z = encode_latents(self.tokenizer, x.reshape(b * t, *x.shape[2:]), generator)
                return z.reshape(b, t, *z.shape[1:]).transpose(1, 2)
            return encode_latents(self.tokenizer, x, generator)

    def condition(self, bare, batch, drop: torch.Tensor, device) -> dict:
        if bare.config.get("num_class_embeds"):
            labels = batch["class_labels"].to(device)
            null = bare.config.num_class_embeds - 1
            return {"class_labels": torch.where(drop.to(device), torch.full_like(labels, null), labels)}
        if self.text is None:
            raise GenlabError("a text-conditioned UNet trains with a text_encoder in its objective")
        captions = ["" if d else c for d, c in zip(drop.tolist(), batch["caption"])]
        from ..pipelines.unet import text_condition

        text = self.text(captions)
        return text_condition(bare, text.hidden_states, text.attention_mask)

    def forward(self, model, batch, generator=None):
        bare = unwrap(model)
        z = self.latents(batch[self.input_key], generator)
        n = z.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=generator).to(z.device)
        noise = randn_like(z, generator)
        drop = torch.rand(n, generator=generator) < self.label_dropout
        cond = self.condition(bare, batch, drop, z.device)
        eps = model(self.scheduler.add_noise(z, noise, t), t, **cond).sample
        return {"loss": F.mse_loss(eps.float(), noise.float())}
