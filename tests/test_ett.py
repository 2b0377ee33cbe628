"""ETT at tiny scale: the understanding sequence and its loss mask, gradients into an IBQ tokenizer, stage freezing
(bit-exact), cached captioning == recomputation, and one-line errors (ETT spec checks 2-5)."""

import pytest
import torch
import torch.nn.functional as F

from genlab.errors import GenlabError
from genlab.models.ett import ETTModel
from genlab.tokenizers.vq import VQTokenizer

SIZES = dict(text_vocab_size=20, codebook_size=32, codebook_dim=8, grid_size=4, hidden_size=32, num_layers=2,
             num_heads=4, num_kv_heads=2, intermediate_size=64, max_position_embeddings=64)
CAPTIONS = [[6, 7, 8], [9, 10]]


def parts(visual_input="embedding", seed=0):
    torch.manual_seed(seed)
    tok = VQTokenizer(in_channels=1, codebook_size=32, codebook_dim=8, channel_multipliers=(1, 2, 2),
                      quantizer_type="ibq", l2_normalize=False)
    return tok, ETTModel(**SIZES, visual_input=visual_input)


def images(n=2, seed=1):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def visual(model, tok, x):
    zq, ids, losses = tok.quantize(tok.encoder(x))
    return model.visual_embeds(zq, ids), losses


def test_the_sequence_and_its_loss_mask():
    tok, model = parts()
    v, _ = visual(model, tok, images())
    embeds, mask, labels = model.understanding_batch(v, CAPTIONS)
    assert embeds.shape == (2, 2 + 16 + 4, 32)  # <boi> + h w + <eoi> + the longest caption + <eos>
    assert int((labels != -100).sum()) == sum(len(c) + 1 for c in CAPTIONS)  # the words and <eos> only
    assert labels[0, 18:22].tolist() == [6, 7, 8, 3] and labels[1, 18:21].tolist() == [9, 10, 3]
    assert mask.sum(1).tolist() == [22, 21]
    # the loss is the mean CE of the next-token predictions at the supervised positions
    logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, 20), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(model.caption_loss(v, CAPTIONS), manual, atol=1e-6)


def test_the_caption_loss_reaches_every_code_only_through_embeddings():
    for kind, reaches in (("embedding", True), ("index", False)):
        tok, model = parts(kind)
        v, _ = visual(model, tok, images())
        model.caption_loss(v, CAPTIONS).backward()
        grad = tok.quantizer.embedding.weight.grad
        if reaches:
            assert (grad.abs().sum(1) > 0).all() and tok.encoder[0].weight.grad.abs().sum() > 0
        else:
            assert grad is None and tok.encoder[0].weight.grad is None


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stages_freeze_bit_exactly(stage):
    tok, model = parts()
    model.set_stage(stage, tok)
    before = {f"tok.{n}": p.detach().clone() for n, p in tok.named_parameters()}
    before.update({n: p.detach().clone() for n, p in model.named_parameters()})
    params = [p for p in [*model.parameters(), *tok.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    for step in range(3):
        v, losses = visual(model, tok, images(seed=step))
        loss = model.caption_loss(v, CAPTIONS) + 0.25 * losses["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = {f"tok.{n}": p for n, p in tok.named_parameters()}
    after.update(dict(model.named_parameters()))
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    projector = {n for n in before if n.startswith("projector.")}
    tokenizer = {n for n in before if n.startswith("tok.")}
    if stage == 1:
        assert changed == projector
    elif stage == 3:
        assert changed & tokenizer == set() and projector <= changed and any(n.startswith("lm.") for n in changed)
    else:
        assert "tok.quantizer.embedding.weight" in changed and projector <= changed


def test_cached_greedy_captioning_equals_recomputation():
    tok, model = parts()
    model.eval()
    with torch.no_grad():
        v, _ = visual(model, tok, images())
        got = model.caption(v, max_new_tokens=6)
        c = model.config
        seq = torch.cat([model.text_embeds(torch.full((2, 1), c.boi_id)), v,
                         model.text_embeds(torch.full((2, 1), c.eoi_id))], 1)
        words = []
        for _ in range(6):
            ids = model.lm(inputs_embeds=seq).logits[:, -1].argmax(-1)
            words.append(ids)
            seq = torch.cat([seq, model.text_embeds(ids[:, None])], 1)
    table = torch.stack(words, 1).tolist()
    expected = [row[: row.index(3)] if 3 in row else row for row in table]
    assert got == expected


def test_bad_input():
    tok, model = parts()
    with pytest.raises(GenlabError, match=r"expects code vectors \(B, 8, 4, 4\)"):
        model.visual_embeds(torch.zeros(2, 8, 8, 8))
    with pytest.raises(GenlabError, match="3 captions for 2 images"):
        model.understanding_batch(torch.zeros(2, 16, 32), [[6]] * 3)
    with pytest.raises(GenlabError, match="unknown ETT stage 4"):
        model.set_stage(4)
    with pytest.raises(GenlabError, match="unknown visual_input 'pixels'"):
        ETTModel(**SIZES, visual_input="pixels")


def test_generation_counts_cache_and_teacher_forcing():
    tok, model = parts()
    model.eval()
    codebook = tok.quantizer.codebook().detach()
    prompts = [[6, 7, 8], [9]]
    record, plain = [], []
    ids = model.generate_codes(prompts, codebook, guidance_scale=2.0, temperature=0.0, record=record)
    assert ids.shape == (2, 4, 4) and model.last_num_forward == 16  # h w passes, CFG batched into each
    again = model.generate_codes(prompts, codebook, guidance_scale=2.0, temperature=0.0, use_cache=False,
                                 record=plain)
    assert torch.equal(ids, again) and torch.allclose(torch.stack(record), torch.stack(plain), atol=1e-4)
    # unguided: the teacher-forced generation loss's logits are the sampler's logits on the same codes
    record = []
    ids = model.generate_codes(prompts, codebook, temperature=0.0, record=record)
    logits = torch.stack(record, 1)  # (B, n, K)
    expected = F.cross_entropy(logits.reshape(-1, 32), ids.flatten(1).reshape(-1))
    with torch.no_grad():
        assert torch.allclose(model.generation_loss(prompts, ids, codebook), expected, atol=1e-4)
    # left padding: a prompt generates the same codes alone as beside a longer one
    alone = model.generate_codes([[9]], codebook, temperature=0.0)
    assert torch.equal(alone[0], ids[1])


def test_sampling_limits_and_cfg_at_one():
    tok, model = parts()
    model.eval()
    codebook = tok.quantizer.codebook().detach()
    a = model.generate_codes([[6, 7]], codebook, generator=torch.Generator().manual_seed(3))
    b = model.generate_codes([[6, 7]], codebook, top_k=32, top_p=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # top-k = K and top-p = 1 are plain multinomial sampling
    record = []
    model.generate_codes([[6, 7]], codebook, guidance_scale=1.0, temperature=0.0, record=record)
    tokens, mask, positions = model.prompt_batch([[6, 7]])
    with torch.no_grad():
        hidden = model.lm.model(inputs_embeds=model.text_embeds(tokens), attention_mask=mask,
                                position_ids=positions).last_hidden_state[:, -1]
        assert torch.equal(record[0], model.visual_head(hidden).float())  # s = 1: the conditional logits exactly


def test_the_pipeline_saves_loads_generates_and_captions(tmp_path):
    from diffusers import DiffusionPipeline

    from genlab.data import load_dataset
    from genlab.pipelines.ett import ETTPipeline
    from genlab.text_tokenizer import build_word_tokenizer

    words = build_word_tokenizer(load_dataset("digits", "train", captions=True).captions)
    tok, model = parts()
    model = ETTModel(**{**SIZES, "text_vocab_size": len(words)})
    ETTPipeline(transformer=model, image_tokenizer=tok, text_tokenizer=words).save_pretrained(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    from transformers import PreTrainedTokenizerBase

    assert type(pipe).__name__ == "ETTPipeline" and isinstance(pipe.text_tokenizer, PreTrainedTokenizerBase)
    assert pipe.text_tokenizer.get_vocab() == words.get_vocab()
    out = pipe(prompt=["a thick slanted seven", "a thin upright one"], generator=torch.Generator().manual_seed(0),
               output_type="pt")
    assert out.images.shape == (2, 1, 16, 16) and pipe.last_num_forward == 16
    again = pipe(prompt=["a thick slanted seven", "a thin upright one"], generator=torch.Generator().manual_seed(0),
                 output_type="pt")
    assert torch.equal(out.images, again.images)
    captions = pipe.caption(out.images * 2 - 1, max_new_tokens=4)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert pipe.caption(pipe(prompt="a thin upright one", output_type="pil").images) is not None
    with pytest.raises(GenlabError, match="outside the vocabulary: purple"):
        pipe(prompt="a purple seven")
    with pytest.raises(GenlabError, match="expected images with 1 channel"):
        pipe.caption(torch.zeros(1, 3, 16, 16))
    with pytest.raises(GenlabError, match="the model reads 4x4"):
        pipe.caption(torch.zeros(1, 1, 32, 32))


def test_the_three_stages_train_through_the_shared_trainer(tmp_path):
    from diffusers import DiffusionPipeline

    from genlab.training.recipe import load_recipe, run_recipe

    quick = ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=2"]
    run_recipe(load_recipe("ibq-digits", quick), str(tmp_path / "ibq"), str(tmp_path / "run-ibq"))
    small = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.num_kv_heads=1",
             "model.intermediate_size=64"]
    align = run_recipe(load_recipe("ett-digits-align", quick + small + [f"tokenizer.path={tmp_path / 'ibq'}"]),
                       str(tmp_path / "align"), str(tmp_path / "run-align"))
    assert align["step"] == 2
    first = DiffusionPipeline.from_pretrained(tmp_path / "align")
    ibq = VQTokenizer.from_pretrained(tmp_path / "ibq")
    assert all(torch.equal(a, b) for a, b in zip(first.image_tokenizer.state_dict().values(),
                                                  ibq.state_dict().values()))  # stage 1: tokenizer untouched
    run_recipe(load_recipe("ett-digits", quick + [f"init={tmp_path / 'align'}"]), str(tmp_path / "ett"),
               str(tmp_path / "run-ett"))
    tuned = DiffusionPipeline.from_pretrained(tmp_path / "ett")
    assert not torch.equal(tuned.image_tokenizer.quantizer.embedding.weight, ibq.quantizer.embedding.weight)
    assert tuned.text_tokenizer.get_vocab() == first.text_tokenizer.get_vocab()  # the words carry over
    gen = quick + [f"init={tmp_path / 'ett'}", "stage=3", "objective.task=generation", "objective.alpha=0"]
    run_recipe(load_recipe("ett-digits", gen), str(tmp_path / "gen"), str(tmp_path / "run-gen"))
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "gen")
    pipe.set_progress_bar_config(disable=True)
    assert all(torch.equal(a, b) for a, b in zip(pipe.image_tokenizer.state_dict().values(),
                                                  tuned.image_tokenizer.state_dict().values()))  # stage 3: frozen
    assert pipe(prompt="a thin upright one", output_type="pt").images.shape == (1, 1, 16, 16)
    with pytest.raises(GenlabError, match="text-to-image training is stage 3"):
        run_recipe(load_recipe("ett-digits", quick + [f"init={tmp_path / 'ett'}", "objective.task=generation"]),
                   str(tmp_path / "bad"), str(tmp_path / "run-bad"))


def test_task_both_is_the_caption_plus_the_generation_loss():
    from genlab.text_tokenizer import build_word_tokenizer
    from genlab.training.ett import ETTObjective, ETTStack

    captions = ["a red star", "a blue circle at the top"]
    words = build_word_tokenizer(captions)
    tok, _ = parts()
    model = ETTModel(**{**SIZES, "text_vocab_size": len(words)})
    stack = ETTStack(model, tok, stage=3)
    batch = {"pixel_values": images(), "caption": captions}
    losses = {task: ETTObjective(words, 3, task=task, prompt_dropout=0.5)(stack, batch, torch.Generator().manual_seed(3))
              for task in ("caption", "generation", "both")}
    both = losses["both"]
    assert torch.allclose(both["loss_caption"], losses["caption"]["loss"])
    assert torch.allclose(both["loss_generation"], losses["generation"]["loss"])  # the same prompt dropout draw
    assert torch.allclose(both["loss"], losses["caption"]["loss"] + losses["generation"]["loss"])
    with pytest.raises(GenlabError, match="stage 3"):
        ETTObjective(words, 2, task="both")


def test_the_shipped_shapes_pair_is_in_the_demo_and_captions_an_upload(tmp_path):
    from pathlib import Path

    from genlab.data import load_dataset
    from genlab.demo import Demo

    demo = Demo(str(Path(__file__).resolve().parents[1] / "pipelines"), max_steps=20, max_batch=4)
    controls = demo.controls("ett-shapes")
    assert controls["caption"]["visible"] and controls["prompt"]["visible"]
    assert [v for _, v in controls["compare"]] == ["baseline"]
    result = demo.compare("ett-shapes", "baseline", {"prompt": "a large red circle in the center",
                                                     "guidance_scale": 3.0, "temperature": 1.0})
    assert result["label_b"] == "baseline ett-shapes-frozen" and "speed ratio" in result["text"]
    from genlab.utils import tensor_to_pil

    upload = tmp_path / "shape.png"
    tensor_to_pil(load_dataset("shapes", "test").images[:1])[0].save(upload)
    assert demo.caption("ett-shapes", str(upload)).startswith("**caption:** a ")
