"""ETT: end-to-end vision tokenizer tuning with a causal language model (Wang et al. 2025), at CPU scale.

A VQ image tokenizer (genlab's VQTokenizer; IBQ quantizer for ETT) turns an image into an h x w grid of codes. The
language model sees the image through the **codebook embeddings** z_q (not through index embeddings): an MLP
projector maps each D-dim code vector to the LM width, so a caption loss on the LM's output reaches the codes and,
through IBQ's straight-through softmax, the tokenizer itself (stage 2). The LM is transformers' `LlamaForCausalLM`,
built from a small config here and fed with `inputs_embeds`; its own token embeddings and head serve the words.

* Understanding (image -> caption): [<boi>] projector(z_q) (h w, raster order) [<eoi>] caption [<eos>]; the caption
  loss covers the caption words and <eos> only (labels -100 elsewhere). `visual_input="index"` is the baseline that
  feeds a learned embedding of the code ids instead (no gradient can reach the tokenizer).
* Generation (prompt -> image): [<bos>] prompt [<boi>] then h w codes in raster order; `visual_head` scores the next
  code id from the LM's last state, and the chosen code's embedding projector(e_idx) is the next input (visual
  inputs are code vectors, visual outputs are ids). CFG batches an empty-prompt row per sample (left padding) and
  mixes the logits, l_u + s (l_c - l_u); one LM pass per code with the KV cache.
* Stages (`set_stage`): 1 trains the projector alone; 2 trains everything, the tokenizer included (ETT: caption
  loss + alpha x the tokenizer's own loss, in the objective); 3 freezes the tokenizer and trains projector + LM.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config

from ..errors import GenlabError, check_positive_int
from ..modeling import GenlabModel

VISUAL_INPUTS = ("embedding", "index")
STAGES = {1: "projector", 2: "everything (tokenizer included)", 3: "projector + LM"}


class ETTModel(GenlabModel):
    """Projector + causal LM (+ index embedding for the baseline); see the module doc. Special token ids follow
    genlab.text_tokenizer (pad 0, unk 1, bos 2, eos 3, boi 4, eoi 5)."""
    #: The blocks `compile_repeated_blocks` (genlab.pipelines.sampling_modes) compiles.
    _repeated_blocks = ("LlamaDecoderLayer",)

    @register_to_config
    def __init__(self, text_vocab_size: int = 64, codebook_size: int = 512, codebook_dim: int = 8,
                 grid_size: int = 8, hidden_size: int = 128, num_layers: int = 4, num_heads: int = 4,
                 num_kv_heads: int = 2, intermediate_size: int = 344, rope_theta: float = 10000.0,
                 max_position_embeddings: int = 256, visual_input: str = "embedding", pad_id: int = 0,
                 bos_id: int = 2, eos_id: int = 3, boi_id: int = 4, eoi_id: int = 5):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        for value, name in ((text_vocab_size, "text_vocab_size"), (codebook_size, "codebook_size"),
                            (codebook_dim, "codebook_dim"), (grid_size, "grid_size"), (hidden_size, "hidden_size"),
                            (num_layers, "num_layers"), (num_heads, "num_heads"), (num_kv_heads, "num_kv_heads")):
            check_positive_int(value, name)
        if visual_input not in VISUAL_INPUTS:
            raise GenlabError(f"unknown visual_input {visual_input!r}; choose one of {', '.join(VISUAL_INPUTS)}")
        if hidden_size % num_heads or num_heads % num_kv_heads:
            raise GenlabError(f"hidden_size {hidden_size}, num_heads {num_heads} and num_kv_heads {num_kv_heads} must "
                              "divide each other")
        if 2 + grid_size ** 2 >= max_position_embeddings:
            raise GenlabError(f"max_position_embeddings {max_position_embeddings} leaves no room for a caption after "
                              f"the {grid_size ** 2} image tokens")
        self.projector = nn.Sequential(nn.Linear(codebook_dim, hidden_size), nn.GELU(),
                                       nn.Linear(hidden_size, hidden_size))
        self.index_embed = nn.Embedding(codebook_size, hidden_size) if visual_input == "index" else None
        self.lm = LlamaForCausalLM(LlamaConfig(
            vocab_size=text_vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
            max_position_embeddings=max_position_embeddings, rope_theta=rope_theta, tie_word_embeddings=False,
            pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id))
        self.visual_head = nn.Linear(hidden_size, codebook_size)  # ETT-Gen: the next code id from the LM state

    @property
    def num_image_tokens(self) -> int:
        return self.config.grid_size ** 2

    # ------------------------------------------------------------ inputs
    def visual_embeds(self, z_q: torch.Tensor | None = None, ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, h w, C) LM inputs of an image: projector(z_q) from the code vectors (B, D, h, w), or, for the index
        baseline, the embedding of the code ids (B, h, w)."""
        c = self.config
        if c.visual_input == "index":
            if ids is None:
                raise GenlabError("an index-input ETT model takes the code ids of the image")
            return self.index_embed(ids.flatten(1))
        if z_q is None or z_q.dim() != 4 or z_q.shape[1] != c.codebook_dim or z_q.shape[-1] != c.grid_size:
            raise GenlabError(f"ETTModel expects code vectors (B, {c.codebook_dim}, {c.grid_size}, {c.grid_size}), got "
                              f"{None if z_q is None else tuple(z_q.shape)}")
        return self.projector(z_q.flatten(2).transpose(1, 2))

    def text_embeds(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def understanding_batch(self, visual: torch.Tensor, captions: list[list[int]]):
        """(inputs_embeds (B, T, C), attention_mask (B, T), labels (B, T)) of [<boi>] image [<eoi>] caption [<eos>],
        right-padded; labels are the caption ids and <eos>, -100 everywhere else."""
        c = self.config
        B, n, _ = visual.shape
        if len(captions) != B:
            raise GenlabError(f"{len(captions)} captions for {B} images")
        lengths = [len(t) + 1 for t in captions]  # + <eos>
        T = 2 + n + max(lengths)
        if T > c.max_position_embeddings:
            raise GenlabError(f"a caption of {max(lengths) - 1} words makes a sequence of {T} > "
                              f"max_position_embeddings {c.max_position_embeddings}")
        device = visual.device
        text = torch.full((B, max(lengths)), c.pad_id, dtype=torch.long, device=device)
        labels = torch.full((B, T), -100, dtype=torch.long, device=device)
        mask = torch.zeros(B, T, dtype=torch.long, device=device)
        for i, ids in enumerate(captions):
            row = torch.tensor(list(ids) + [c.eos_id], dtype=torch.long, device=device)
            text[i, : len(row)] = row
            labels[i, 2 + n: 2 + n + len(row)] = row
            mask[i, : 2 + n + len(row)] = 1
        boi = self.text_embeds(torch.full((B, 1), c.boi_id, device=device))
        eoi = self.text_embeds(torch.full((B, 1), c.eoi_id, device=device))
        embeds = torch.cat([boi, visual, eoi, self.text_embeds(text)], 1)
        return embeds, mask, labels

    def caption_loss(self, visual: torch.Tensor, captions: list[list[int]]) -> torch.Tensor:
        """Mean token cross-entropy over the caption words and <eos> (L_cap)."""
        embeds, mask, labels = self.understanding_batch(visual, captions)
        return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def caption(self, visual: torch.Tensor, max_new_tokens: int = 12, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> list[list[int]]:
        """Caption ids (without <eos>) after [<boi>] image [<eoi>]: greedy at temperature 0, else sampled; one LM
        step per word with the LM's KV cache."""
        from transformers import DynamicCache

        from .sampling import sample_from_logits

        c = self.config
        B = visual.shape[0]
        device = visual.device
        boi = self.text_embeds(torch.full((B, 1), c.boi_id, device=device))
        eoi = self.text_embeds(torch.full((B, 1), c.eoi_id, device=device))
        embeds, cache = torch.cat([boi, visual, eoi], 1), DynamicCache()
        words, done = [], torch.zeros(B, dtype=torch.bool, device=device)
        for _ in range(check_positive_int(max_new_tokens, "max_new_tokens")):
            out = self.lm(inputs_embeds=embeds, use_cache=True, **{self._cache_argument: cache})
            ids = sample_from_logits(out.logits[:, -1:], temperature, generator=generator)[:, 0]
            ids = torch.where(done, torch.full_like(ids, c.eos_id), ids)
            words.append(ids)
            done |= ids == c.eos_id
            if bool(done.all()):
                break
            embeds = self.text_embeds(ids[:, None])
        table = torch.stack(words, 1).tolist()
        return [row[: row.index(c.eos_id)] if c.eos_id in row else row for row in table]

    # ------------------------------------------------------------ generation
    def code_embeds(self, ids: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """(B, n) code ids -> (B, n, C) LM inputs: projector(e_id), or the index embedding for the baseline."""
        if self.config.visual_input == "index":
            return self.index_embed(ids)
        return self.projector(codebook[ids])

    def prompt_batch(self, prompts: list[list[int]]):
        """(ids (R, L), attention mask (R, L), positions (R, L)) of [<bos>] prompt [<boi>], left-padded."""
        c = self.config
        rows = [[c.bos_id, *p, c.boi_id] for p in prompts]
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), c.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, L - len(r):] = torch.tensor(r)
            mask[i, L - len(r):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        device = self.visual_head.weight.device
        return ids.to(device), mask.to(device), positions.to(device)

    def generation_loss(self, prompts: list[list[int]], ids: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Mean CE of the visual head over the h w code ids (B, h, w) of the images, teacher-forced after
        [<bos>] prompt [<boi>] (ETT-Gen's post-training loss)."""
        tokens, mask, positions = self.prompt_batch(prompts)
        codes = ids.flatten(1)
        n = codes.shape[1]
        embeds = torch.cat([self.text_embeds(tokens), self.code_embeds(codes[:, :-1], codebook)], 1)
        mask = torch.cat([mask, torch.ones_like(codes[:, :-1])], 1)
        positions = torch.cat([positions, positions[:, -1:] + torch.arange(1, n, device=positions.device)], 1)
        hidden = self.lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        logits = self.visual_head(hidden[:, -n:])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    @torch.no_grad()
    def generate_codes(self, prompts: list[list[int]], codebook: torch.Tensor, guidance_scale: float = 1.0,
                       temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                       generator: torch.Generator | None = None, use_cache: bool = True, record: list | None = None,
                       callback=None) -> torch.Tensor:
        """(B, h, w) code ids for the prompts, one LM pass per code (with the KV cache; `use_cache=False` re-runs
        the whole sequence every step). record: a list receiving each step's guided logits (B, K); callback(step,
        ids so far (B, step + 1)) after every code. Sets `last_num_forward`."""
        from transformers import DynamicCache

        from .sampling import sample_from_logits

        c = self.config
        B, n = len(prompts), self.num_image_tokens
        guided = guidance_scale != 1.0
        tokens, prompt_mask, positions = self.prompt_batch(prompts + ([[]] * B if guided else []))
        embeds, cache = self.text_embeds(tokens), DynamicCache() if use_cache else None
        # The attention mask of the whole sequence, made once: step s sees its first L + s columns.
        L = tokens.shape[1]
        full_mask = torch.cat([prompt_mask, torch.ones_like(prompt_mask[:, :1]).expand(-1, n)], 1)
        full_embeds, codes, passes = embeds, [], 0
        for step in range(n):
            mask = full_mask[:, :L + step]
            if use_cache:
                kwargs = {self._cache_argument: cache, "use_cache": True}
                hidden = self.lm.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                       **kwargs).last_hidden_state[:, -1]
            else:
                all_positions = (mask.cumsum(1) - 1).clamp(min=0)
                hidden = self.lm.model(inputs_embeds=full_embeds, attention_mask=mask,
                                       position_ids=all_positions).last_hidden_state[:, -1]
            passes += 1
            logits = self.visual_head(hidden).float()
            if guided:
                cond, uncond = logits[:B], logits[B:]
                logits = uncond + guidance_scale * (cond - uncond)
            if record is not None:
                record.append(logits)
            ids = sample_from_logits(logits[:, None], temperature, top_k, top_p, generator)[:, 0]
            codes.append(ids)
            if callback is not None:
                callback(step, torch.stack(codes, 1))
            rows = torch.cat([ids, ids]) if guided else ids
            embeds = self.code_embeds(rows[:, None], codebook)
            if not use_cache:  # the cached path feeds only the new code
                full_embeds = torch.cat([full_embeds, embeds], 1)
            positions = positions[:, -1:] + 1
        self.last_num_forward = passes
        return torch.stack(codes, 1).reshape(B, c.grid_size, c.grid_size)

    @property
    def _cache_argument(self) -> str:
        """transformers renamed `past_key_values` to `cache` (5.x); pass the cache under the name this one takes."""
        import inspect

        return "cache" if "cache" in inspect.signature(type(self.lm).forward).parameters else "past_key_values"

    # ------------------------------------------------------------ stages
    def set_stage(self, stage: int, tokenizer: nn.Module | None = None) -> None:
        """Freeze what stage 1, 2 or 3 leaves fixed (the tokenizer: given, it is frozen or unfrozen with it)."""
        if stage not in STAGES:
            raise GenlabError(f"unknown ETT stage {stage!r}: 1 (projector), 2 (end to end), 3 (projector + LM)")
        self.requires_grad_(stage != 1)
        self.projector.requires_grad_(True)
        if self.index_embed is not None:
            self.index_embed.requires_grad_(True)
        if tokenizer is not None:
            tokenizer.requires_grad_(stage == 2)
