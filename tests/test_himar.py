"""MAR and Hi-MAR: layout, step and head-call counts under CFG, reveal invariants, pivot semantics, clamping,
identity at init, the exact reduction of Hi-MAR to MAR, the CFG ramp, training, pipelines and bad input."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.layers import ViTBlock
from genlab.layers.diffusion_heads import DiffusionProcess, DiTDiffusionHead, MLPDiffusionHead
from genlab.models import HiMARModel, MARModel
from genlab.schedulers.masking import mask_from_order, random_orders, reveal_counts, truncnorm_ratio

KW = dict(sample_size=8, in_channels=1, patch_size=2, buffer_size=4, num_classes=3, head_steps=3, head2_steps=3)


def mar(seed=0, **kw):
    torch.manual_seed(seed)
    return MARModel.from_preset("test", **{k: v for k, v in {**KW, **kw}.items() if k != "head2_steps"}).eval()


def himar(seed=0, **kw):
    torch.manual_seed(seed)
    model = HiMARModel.from_preset("test", **{**KW, **kw}).eval()
    with torch.no_grad():  # away from the zero init, so that every output depends on its inputs
        for name, p in model.named_parameters():
            if "output" in name or "final_modulation" in name or "adaLN" in name:
                p.normal_(0, 0.05)
    return model


def labels_buffer(model, labels):
    return model.condition(class_labels=torch.tensor(labels))


# ---------------------------------------------------------------- 1: shapes and layout
def test_layout_positions_and_encoder_sees_buffer_plus_visible_only():
    model = himar()
    Ns, Nd, b = model.num_low_tokens, model.num_tokens, model.config.buffer_size
    assert (Ns, Nd) == (4, 16) and model.grid == (4, 4) and model.low_grid == (2, 2)
    D = model.config.hidden_size
    assert model.backbone.encoder_pos.shape == (2, b + Ns + Nd, D)  # one table per phase
    assert model.backbone.mask_token.shape == (2, Ns + Nd, D)  # per phase and position (MAR: one shared vector)
    assert mar().backbone.mask_token.shape == (1, 1, D)
    seen = []
    model.backbone.encoder_blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    buffer = labels_buffer(model, [0, 1])
    dense, low, pivots = model.sample(buffer, None, 3, 1.0, 1.0, torch.Generator().manual_seed(0), return_low=True)
    assert dense.shape == (2, Nd, 4) and low.shape == (2, Ns, 4) and pivots.shape == (2, Ns, D)
    k1 = model.phase1_steps
    visible_low = [sum(reveal_counts(Ns, k1)[:i]) for i in range(k1)]
    visible_dense = [sum(reveal_counts(Nd, 3)[:i]) for i in range(3)]
    assert seen == [b + v for v in visible_low] + [b + Ns + v for v in visible_dense]


def test_dit_head_takes_the_whole_map():
    head = DiTDiffusionHead(token_dim=4, cond_dim=8, grid=(4, 4), width=16, depth=1, num_heads=2)
    out = head(torch.randn(2, 16, 4), torch.tensor([5, 900]), torch.randn(2, 16, 8))
    assert out.shape == (2, 16, 4)
    with pytest.raises(GenlabError, match="16 tokens"):
        head(torch.randn(2, 9, 4), torch.tensor([5, 900]), torch.randn(2, 9, 8))


# ---------------------------------------------------------------- 2: step and head-call counts
@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_backbone_and_head_calls_and_their_batch(guidance, monkeypatch):
    model = himar()
    calls = {"backbone": [], "mlp": [], "dit": []}
    model.backbone.register_forward_hook(lambda m, i, o: calls["backbone"].append(i[1].shape[0]))
    model.head.register_forward_hook(lambda m, i, o: calls["mlp"].append(i[2].shape[0]))
    model.dense_head.register_forward_hook(lambda m, i, o: calls["dit"].append(i[2].shape[0]))
    B, K2 = 2, 3
    buffer = labels_buffer(model, [0, 2])
    null = model.null_condition(B)
    model.sample(buffer, null, K2, guidance, 1.0, torch.Generator().manual_seed(0), head_steps=2, head2_steps=5)
    rows = 2 * B if guidance != 1.0 else B
    k1 = model.phase1_steps
    assert len(calls["backbone"]) == k1 + K2 and set(calls["backbone"]) == {rows}
    assert len(calls["mlp"]) == k1 * 2 and len(calls["dit"]) == K2 * 5  # K1 x S1 and K2 x S2 head passes
    assert set(calls["dit"]) == {rows}
    mlp_rows = [r // (2 if guidance != 1.0 else 1) for r in calls["mlp"]]  # tokens revealed per step, per half
    assert [mlp_rows[i] for i in range(0, len(mlp_rows), 2)] == [B * c for c in reveal_counts(4, k1)]


# ---------------------------------------------------------------- 3: reveal invariants
def test_reveal_schedule_closed_form_and_partition():
    assert reveal_counts(64, 4) == [5, 14, 21, 24]
    assert reveal_counts(16, 16) == [1] * 16
    assert reveal_counts(256, 4) == [20, 55, 84, 97]
    assert reveal_counts(64, 32)[:13] == [1] * 13 and sum(reveal_counts(64, 32)) == 64
    with pytest.raises(GenlabError, match="at least one token"):
        reveal_counts(4, 5)
    orders = random_orders(3, 10, torch.Generator().manual_seed(0))
    assert all(sorted(o.tolist()) == list(range(10)) for o in orders)
    assert mask_from_order(orders, 4).sum(1).tolist() == [4, 4, 4]
    draws = [truncnorm_ratio(torch.Generator().manual_seed(s)) for s in range(200)]
    assert all(0.7 <= r <= 1.0 for r in draws) and 0.8 < sum(draws) / len(draws) < 0.9


def test_revealed_dense_tokens_never_change_and_low_res_comes_first():
    model = himar()
    events = []
    model.sample(labels_buffer(model, [1, 2]), model.null_condition(2), 3, 2.0, 1.0,
                 torch.Generator().manual_seed(0), observe=lambda ph, s, info: events.append((ph, s, info)))
    phases = [ph for ph, _, info in events if "revealed" in info]
    assert phases == sorted(phases)  # every low-res step before any dense step
    steps = [info for ph, _, info in events if ph == 1 and "dense" in info]
    seen = torch.zeros(2, 16, dtype=torch.bool)
    final = steps[-1]["dense"]
    for info in steps:
        assert not bool((info["revealed"] & seen).any())  # the reveal sets are disjoint ...
        seen |= info["revealed"]
        # ... and a token, once revealed, keeps its value bit for bit up to the output
        assert torch.equal(info["dense"][seen], final[seen])
    assert bool(seen.all())


# ---------------------------------------------------------------- 4: pivot semantics
def test_phase_two_reads_the_pivots_not_the_sampled_low_res_tokens():
    model = himar()
    buffer, null = labels_buffer(model, [0, 1]), model.null_condition(2)
    low, pivots = model.sample_pivots(buffer, null, 2.0, 1.0, torch.Generator().manual_seed(0))
    args = (buffer, null, 3, 2.0, 1.0)
    a = model.sample_dense(pivots, *args, generator=torch.Generator().manual_seed(1))
    b = model.sample_dense(pivots.clone(), *args, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # the sampled low-res tokens are no input of phase 2 (perturbing them changes nothing)
    c = model.sample_dense(pivots + 0.5 * torch.randn_like(pivots), *args, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)  # the pivots are


# ---------------------------------------------------------------- 5: clamping
def test_known_tokens_are_clamped_to_the_forward_process_of_the_initial_noise():
    process = DiffusionProcess()
    head = DiTDiffusionHead(token_dim=4, cond_dim=8, grid=(2, 2), width=16, depth=1, num_heads=2)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.05)
    known = torch.randn(1, 4, 4)
    known_mask = torch.tensor([[True, False, True, False]])
    inputs = []
    g = torch.Generator().manual_seed(3)
    noise0 = torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(3))  # the chain's first draw
    out = process.sample_tokens(head, torch.randn(1, 4, 8), 5, 1.0, 1.0, g, known=known, known_mask=known_mask,
                                token_dim=4, observe=lambda i, t, x: inputs.append((t, x.clone())))
    for t, x in inputs:
        expected = process.train.add_noise(known, noise0, torch.tensor([t]))
        torch.testing.assert_close(x[known_mask], expected[known_mask], atol=1e-6, rtol=0)
    # the clamp comes before each step, not after the last: the output at known positions is not exactly x0
    assert not torch.allclose(out[known_mask], known[known_mask])


def test_dense_phase_writes_only_still_masked_positions():
    model = himar()
    events = []
    model.sample(labels_buffer(model, [0]), None, 3, 1.0, 1.0, torch.Generator().manual_seed(2),
                 observe=lambda ph, s, info: events.append((ph, info)))
    heads = [info for ph, info in events if ph == 1 and "head_step" in info]
    steps = [info for ph, info in events if ph == 1 and "dense" in info]
    for i in range(1, len(steps)):
        earlier = steps[i - 1]["dense"]
        revealed_before = torch.zeros_like(steps[i]["revealed"])
        for s in steps[:i]:
            revealed_before |= s["revealed"]
        assert torch.equal(steps[i]["dense"][revealed_before], earlier[revealed_before])
    assert heads and all(info["known_mask"].shape == (1, 16) for info in heads)


# ---------------------------------------------------------------- 6: identity at init
def test_scale_aware_block_is_the_plain_block_at_init_and_heads_output_zero():
    torch.manual_seed(0)
    plain = ViTBlock(32, 4, num_phases=0)
    aware = ViTBlock(32, 4, num_phases=2)
    aware.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 5, 32)
    v = torch.randn(1, 1, 4 * 32)  # any phase vector: a = 0 makes it irrelevant at init
    for phase in (0, 1):
        assert (aware(x, v, phase) - plain(x)).abs().max() < 1e-6
    mlp = MLPDiffusionHead(token_dim=4, cond_dim=8, width=16, depth=2)
    dit = DiTDiffusionHead(token_dim=4, cond_dim=8, grid=(2, 2), width=16, depth=1, num_heads=2)
    assert torch.equal(mlp(torch.randn(6, 4), torch.arange(6), torch.randn(6, 8)), torch.zeros(6, 4))
    assert torch.equal(dit(torch.randn(2, 4, 4), torch.tensor([1, 2]), torch.randn(2, 4, 8)), torch.zeros(2, 4, 4))


# ---------------------------------------------------------------- 7: exact reduction to MAR
def test_himar_without_pivots_and_with_the_mlp_head_is_mar_bit_for_bit():
    a = mar(seed=3)
    b = HiMARModel.from_preset("test", **{**KW, "pivots": False, "head2": "mlp"}).eval()
    assert set(a.state_dict()) == set(b.state_dict())
    b.load_state_dict(a.state_dict())
    tokens = torch.randn(4, 16, 4)
    buf_a, buf_b = labels_buffer(a, [0, 1, 2, 3]), labels_buffer(b, [0, 1, 2, 3])
    assert torch.equal(buf_a, buf_b)
    la = a(tokens, buf_a, torch.Generator().manual_seed(0)).loss
    lb = b(tokens, buf_b, torch.Generator().manual_seed(0)).loss
    assert torch.equal(la, lb)
    sa = a.sample(buf_a[:2], a.null_condition(2), 4, 2.0, 1.0, torch.Generator().manual_seed(1))
    sb = b.sample(buf_b[:2], b.null_condition(2), 4, 2.0, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(sa, sb)


# ---------------------------------------------------------------- 8: CFG
def test_cfg_ramp_and_unit_scale(monkeypatch):
    model = himar()
    scales = []
    real = model.process.sample_tokens

    def spy(head, z, steps, temperature, cfg, *args, **kw):
        scales.append((head is model.head, cfg))
        return real(head, z, steps, temperature, cfg, *args, **kw)

    monkeypatch.setattr(model.process, "sample_tokens", spy)
    model.sample(labels_buffer(model, [0]), model.null_condition(1), 3, 3.0, 1.0, torch.Generator().manual_seed(0),
                 phase1_guidance=2.0)
    k1 = model.phase1_steps
    still1 = [4 - sum(reveal_counts(4, k1)[:i + 1]) for i in range(k1)]
    still2 = [16 - sum(reveal_counts(16, 3)[:i + 1]) for i in range(3)]
    assert [s for is_low, s in scales if is_low] == [1 + (2.0 - 1) * (4 - m) / 4 for m in still1]
    assert [s for is_low, s in scales if not is_low] == [1 + (3.0 - 1) * (16 - m) / 16 for m in still2]
    assert scales[-1][1] == 3.0  # the ramp ends at the full scale
    monkeypatch.undo()
    # scale 1 runs the single batch: the null buffer changes nothing
    plain = model.sample(labels_buffer(model, [0]), None, 3, 1.0, 1.0, torch.Generator().manual_seed(0))
    with_null = model.sample(labels_buffer(model, [0]), model.null_condition(1), 3, 1.0, 1.0,
                             torch.Generator().manual_seed(0), phase1_guidance=1.0)
    assert torch.equal(plain, with_null)


# ---------------------------------------------------------------- training
def test_training_losses_weights_and_pivot_drop():
    model = himar()
    model.train()
    tokens, low = torch.randn(4, 16, 4), torch.randn(4, 4, 4)
    out = model(tokens, labels_buffer(model, [0, 1, 2, 3]), torch.Generator().manual_seed(0), low_tokens=low, step=5)
    torch.testing.assert_close(out.loss.detach(), 0.4 * out.parts["loss_low"] + 0.6 * out.parts["loss_dense"])
    out.loss.backward()
    assert model.cond_z_proj.weight.grad is not None and model.dense_head.x_embed.weight.grad is not None
    assert model.pivot_drop(0) == 1.0 and model.pivot_drop(10**9) == pytest.approx(0.75)
    assert model.pivot_drop(model.config.pivot_drop_warmup_steps // 2) == pytest.approx(0.875)
    with pytest.raises(GenlabError, match="low-res tokens"):
        model(tokens, labels_buffer(model, [0, 1, 2, 3]), None)


def test_label_dropout_rate_of_the_objective():
    from genlab.tokenizers import PixelTokenizer
    from genlab.training.objectives import MaskedTokensObjective

    model = mar()
    objective = MaskedTokensObjective(PixelTokenizer(1), label_dropout=0.1)
    seen = []
    real = model.condition
    model.condition = lambda class_labels=None, **kw: seen.append(class_labels) or real(class_labels=class_labels)
    batch = {"pixel_values": torch.rand(500, 1, 8, 8) * 2 - 1, "class_labels": torch.zeros(500, dtype=torch.long)}
    objective(model, batch, torch.Generator().manual_seed(0))
    rate = float((seen[0] == model.null_class).float().mean())
    assert 0.07 < rate < 0.13


@pytest.mark.parametrize("kind", ["mar", "himar"])
def test_a_recipe_trains_saves_and_loads_as_a_pipeline(kind, tmp_path):
    from diffusers import DiffusionPipeline

    from genlab.training.recipe import load_recipe, run_recipe

    recipe = load_recipe(f"{kind}-digits", ["train.steps=4", "train.batch_size=8", "train.checkpoint_every=4",
                                             "model.preset=test", "model.head_steps=2", "sample={}"]
                         + (["model.head2_steps=2", "model.head2_width=16", "model.head2_depth=1"]
                            if kind == "himar" else []))
    summary = run_recipe(recipe, str(tmp_path / "pipe"), str(tmp_path / "run"))
    assert summary["step"] == 4 and all(math.isfinite(x) for x in summary["losses"])
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == ("HiMARPipeline" if kind == "himar" else "MARPipeline")
    assert pipe.conditioning_inputs() == ("class_labels",)
    images = pipe(class_labels=[0, 7], num_inference_steps=2, head_steps=2, generator=torch.Generator().manual_seed(0),
                  output_type="pt").images
    again = pipe(class_labels=[0, 7], num_inference_steps=2, head_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (2, 1, 16, 16) and torch.equal(images, again)


def test_bf16_autocast_training_step_has_no_nan():
    model = himar()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 16, 4), labels_buffer(model, [0, 1, 2, 0]), torch.Generator().manual_seed(0),
                    low_tokens=torch.randn(4, 4, 4), step=1)
    out.loss.float().backward()
    assert torch.isfinite(out.loss.float())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- text conditioning
def test_text_conditioned_model_uses_the_text_states_and_a_null_buffer():
    torch.manual_seed(0)
    model = MARModel.from_preset("test", **{k: v for k, v in KW.items() if k != "head2_steps"}, text_dim=12)
    text, mask = torch.randn(2, 6, 12), torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    buffer = model.condition(text=text, text_mask=mask)
    assert buffer.shape == (2, 4, model.config.hidden_size)
    assert torch.equal(buffer[0, 3], model.text_pad[0])  # padding slots hold the learned pad
    dropped = model.condition(text=text, text_mask=mask, drop=torch.tensor([True, False]))
    assert torch.equal(dropped[0], model.null_condition(1)[0]) and torch.equal(dropped[1], buffer[1])
    assert model.conditioning == "text"
    with pytest.raises(GenlabError, match="text-conditioned"):
        model.condition(class_labels=torch.tensor([0]))


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def pipes():
    from genlab.pipelines.mar import HiMARPipeline, MARPipeline
    from genlab.tokenizers import PixelTokenizer

    class_pipe = HiMARPipeline(transformer=himar(), image_tokenizer=PixelTokenizer(1))
    class_pipe.set_progress_bar_config(disable=True)
    text_model = MARModel.from_preset("test", **{k: v for k, v in KW.items() if k != "head2_steps"}, text_dim=384)
    from genlab.text_encoder import MiniLMTextEncoder

    text_pipe = MARPipeline(transformer=text_model, image_tokenizer=PixelTokenizer(1), text_encoder=MiniLMTextEncoder())
    text_pipe.set_progress_bar_config(disable=True)
    return class_pipe, text_pipe


@pytest.mark.parametrize("which,kwargs,match", [
    ("text", dict(prompt=[]), "prompt is an empty list"),
    ("text", dict(prompt=["a red circle"], class_labels=[0]), "text-conditioned: pass prompt, not class_labels"),
    ("class", dict(class_labels=[0], prompt="a cat"), "class-conditional: pass class_labels, not prompt"),
    ("class", dict(class_labels=[0], head_steps=0), "head_steps must be a positive integer"),
    ("class", dict(class_labels=[0], head2_steps=0), "head2_steps must be a positive integer"),
    ("class", dict(class_labels=[0], temperature=0.0), "temperature must be > 0"),
    ("class", dict(class_labels=[0], temperature=-1.0), "temperature must be > 0"),
    ("class", dict(class_labels=[0], num_inference_steps=17), "more than the 16 tokens"),
    ("class", dict(class_labels=[0], generator=[torch.Generator()]), "pass a torch.Generator"),
    ("class", dict(class_labels=[5]), "out of range"),
    ("text", dict(prompt=[""]), "non-empty string"),
])
def test_pipeline_bad_input(pipes, which, kwargs, match):
    pipe = pipes[0] if which == "class" else pipes[1]
    with pytest.raises(GenlabError, match=match) as info:
        pipe(num_inference_steps=kwargs.pop("num_inference_steps", 2), output_type="pt", **kwargs)
    assert "\n" not in str(info.value)


def test_model_config_errors():
    with pytest.raises(GenlabError, match="head2 must be one of"):
        HiMARModel.from_preset("test", **{**KW, "head2": "unet"})
    with pytest.raises(GenlabError, match="even token grid"):
        HiMARModel.from_preset("test", **{**KW, "sample_size": 6})
    with pytest.raises(GenlabError, match="without pivots"):
        HiMARModel.from_preset("test", **{**KW, "pivots": False})
    with pytest.raises(GenlabError, match="not divisible by patch_size"):
        MARModel.from_preset("test", sample_size=7, patch_size=2)
