"""ETT training through the shared trainer: the trained module holds the LM side and the image tokenizer together
(`ETTStack`), so that stage 2 can tune the tokenizer with the same optimiser, EMA and checkpoints.

Stages (recipe `stage:`): 1 = projector only, on the caption loss; 2 = everything, on the caption loss + alpha x the
tokenizer's own loss (MSE reconstruction + quantizer terms) on the same images; 3 = projector + LM with the tokenizer
frozen, on the caption loss (`task: caption`), on text-to-image next-code prediction (`task: generation`, the
prompt dropped to the empty one with probability `prompt_dropout` for CFG), or on the sum of both on the same batch
(`task: both`: one pipeline that captions and generates, as ETT's chat and generation post-training share a model).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import GenlabError
from .objectives import unwrap

TASKS = ("caption", "generation", "both")


class ETTStack(nn.Module):
    """transformer (ETTModel) + image_tokenizer (VQTokenizer), trained as one module."""

    def __init__(self, transformer: nn.Module, image_tokenizer: nn.Module, stage: int):
        super().__init__()
        self.transformer, self.image_tokenizer = transformer, image_tokenizer
        transformer.set_stage(stage, image_tokenizer)


class ETTObjective(nn.Module):
    """See the module doc. `text_tokenizer` turns the batch's captions into word ids."""

    def __init__(self, text_tokenizer, stage: int, alpha: float = 0.25, task: str = "caption",
                 prompt_dropout: float = 0.1):
        super().__init__()
        if task not in TASKS:
            raise GenlabError(f"unknown ETT task {task!r}; choose one of {', '.join(TASKS)}")
        if task != "caption" and stage != 3:
            raise GenlabError("ETT text-to-image training is stage 3 (the tokenizer frozen): set stage: 3")
        self.text_tokenizer, self.stage, self.alpha, self.task = text_tokenizer, stage, alpha, task
        self.prompt_dropout = prompt_dropout

    def word_ids(self, captions) -> list[list[int]]:
        return [self.text_tokenizer(c, add_special_tokens=False)["input_ids"] for c in captions]

    def forward(self, model, batch, generator=None):
        stack = unwrap(model)
        lm, tok = stack.transformer, stack.image_tokenizer
        images = batch["pixel_values"]
        if "caption" not in batch:
            raise GenlabError("ETT trains on captions: use a data set with captions (shapes, or digits with "
                              "captions: true)")
        words = self.word_ids(batch["caption"])
        tune = self.stage == 2
        with torch.set_grad_enabled(tune):
            z_q, ids, q_losses = tok.quantize(tok.encoder(tok.check_images(images)))
        out = {}
        if self.task != "caption":
            drop = torch.rand(len(words), generator=generator) < self.prompt_dropout
            prompts = [[] if d else w for w, d in zip(words, drop.tolist())]
            generation = lm.generation_loss(prompts, ids, tok.quantizer.codebook().detach())
            out = {"loss": generation, "loss_generation": generation.detach()}
            if self.task == "generation":
                return out
        caption = lm.caption_loss(lm.visual_embeds(z_q, ids), words)
        out.update(loss=out.get("loss", 0) + caption, loss_caption=caption.detach())
        if tune and self.alpha:
            reconstruction = F.mse_loss(tok.decoder(z_q), images)
            tokenizer_loss = reconstruction + q_losses["loss"]
            out.update(loss=caption + self.alpha * tokenizer_loss, loss_tokenizer=tokenizer_loss.detach(),
                       recon=reconstruction.detach())
        return out
