"""TokenBridgeModel on MAR's backbone: dequantized backbone inputs, CE on the indices, CFG on the backbone states
with MAR's linear ramp, pass counts, save / load with the quantizer's settings, one-line errors (spec checks 4, 5, 9
and pitfalls 1, 4, 6, 14)."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.models.tokenbridge import TokenBridgeModel
from genlab.schedulers.masking import reveal_counts

SIZES = dict(sample_size=4, in_channels=4, hidden_size=32, encoder_depth=1, decoder_depth=1, num_heads=2,
             head_width=32, head_depth=1, head_heads=2, num_levels=16)


def model(**kw):
    torch.manual_seed(0)
    return TokenBridgeModel(**{**SIZES, **kw}).eval()


def test_the_backbone_sees_dequantized_tokens_and_the_loss_is_ce_on_their_indices():
    m = model(channel_order=[2, 0, 3, 1])
    tokens = torch.randn(3, 16, 4, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = m.z_proj.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    out = m(tokens, m.condition(class_labels=torch.tensor([0, 1, 2])), torch.Generator().manual_seed(2))
    hook.remove()
    idx, deq = m.quantizer.quantize(tokens)
    assert torch.equal(seen[0], deq) and not torch.equal(seen[0], tokens)
    assert abs(out.loss.item() - math.log(16)) < 1.0  # near ln B at initialisation
    # the same loss by hand: the masked positions' CE, from the same generator draws
    g = torch.Generator().manual_seed(2)
    from genlab.schedulers.masking import mask_from_order, random_orders, truncnorm_ratio

    orders = random_orders(3, 16, g)
    mask = mask_from_order(orders, math.ceil(16 * truncnorm_ratio(g)))
    z = m.decoder_states(deq, m.condition(class_labels=torch.tensor([0, 1, 2])), mask)
    assert torch.allclose(out.loss, m.head.loss(z[mask], idx[mask]), atol=1e-6)


def test_a_few_steps_fit_a_fixed_batch():
    m = model().train()
    tokens = torch.randn(8, 16, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(8) % 10
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss = m(tokens, m.condition(class_labels=labels), torch.Generator().manual_seed(step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_sampling_counts_cfg_on_features_and_the_linear_ramp():
    m = model()
    buffer = m.condition(class_labels=torch.tensor([3, 4]))
    calls, scales = {"backbone": 0, "head": 0}, []
    m.backbone.register_forward_hook(lambda *a: calls.__setitem__("backbone", calls["backbone"] + 1))
    original = m.head.sample

    def head_sample(z, *a, **k):
        calls["head"] += 1
        return original(z, *a, **k)

    m.head.sample = head_sample
    original_head = m.sample_head
    m.sample_head = lambda z, cfg, *a: scales.append(cfg) or original_head(z, cfg, *a)
    tokens = m.sample(buffer, m.null_condition(2), 4, 3.0, 1.0, torch.Generator().manual_seed(0))
    counts = reveal_counts(16, 4)
    assert calls == {"backbone": 4, "head": 4}  # one batched [uncond ; cond] backbone pass and one head call a step
    still = [16 - sum(counts[: i + 1]) for i in range(4)]
    assert scales == pytest.approx([1 + 2.0 * (16 - s) / 16 for s in still])
    # every token is a dequantized level
    idx = m.quantizer.quantize(tokens)[0]
    assert tokens.shape == (2, 16, 4) and torch.equal(m.quantizer.dequantize(idx), tokens)


def test_cfg_mixes_states_before_the_head():
    m = model()
    z_c = torch.randn(5, 32, generator=torch.Generator().manual_seed(4))
    z_u = torch.randn(5, 32, generator=torch.Generator().manual_seed(5))
    w = 2.5
    guided = m.sample_head(torch.cat([z_u, z_c]), w, 0.0, None, 1)
    assert torch.equal(guided, m.sample_head(z_u + w * (z_c - z_u), 1.0, 0.0, None, 1))
    assert torch.equal(m.sample_head(torch.cat([z_c, z_c]), w, 0.0, None, 1), m.sample_head(z_c, 1.0, 0.0, None, 1))


def test_save_and_load_keep_the_quantizer_and_the_order(tmp_path):
    m = model(channel_order=[1, 3, 0, 2], num_levels=8, value_range=[-3.0, 3.0], quant_scheme="uniform",
              head_type="parallel")
    m.save_pretrained(tmp_path)
    assert "head_steps" not in (tmp_path / "config.json").read_text()  # MAR's diffusion settings are left out
    back = TokenBridgeModel.from_pretrained(tmp_path)
    assert type(back.head).__name__ == "ParallelChannelHead" and back.quantizer.num_levels == 8
    assert back.quantizer.scheme == "uniform" and back.quantizer.value_range == (-3.0, 3.0)
    assert torch.equal(back.quantizer.reconstruction_values, m.quantizer.reconstruction_values)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))


def test_bad_config():
    with pytest.raises(GenlabError, match="unknown head_type 'mlp'"):
        model(head_type="mlp")
    with pytest.raises(GenlabError, match="not a permutation of the 4 channels"):
        model(channel_order=[0, 1, 2])
    with pytest.raises(GenlabError, match="num_levels must be an integer >= 2"):
        model(num_levels=1)


def test_the_digits_recipe_trains_saves_and_loads_with_diffusers(tmp_path):
    from diffusers import DiffusionPipeline

    from genlab.training.recipe import load_recipe, run_recipe

    overrides = ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=2", "model.encoder_depth=1",
                 "model.decoder_depth=1"]
    summary = run_recipe(load_recipe("tokenbridge-digits", overrides), str(tmp_path / "pipe"), str(tmp_path / "run"))
    assert summary["step"] == 2 and all(math.isfinite(v) for v in summary["losses"])
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "TokenBridgePipeline" and "head_steps" not in pipe.__call__.__code__.co_varnames
    model = pipe.transformer
    assert sorted(model.config.channel_order) == [0, 1, 2, 3]  # `frequency` became a measured permutation
    assert model.quantizer.scheme == "uniform" and model.quantizer.num_levels == 16
    out = pipe(class_labels=[0, "7"], num_inference_steps=4, generator=torch.Generator().manual_seed(0),
               output_type="pt")
    assert out.images.shape == (2, 1, 16, 16)
    again = pipe(class_labels=[0, "7"], num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                 output_type="pt")
    assert torch.equal(out.images, again.images)  # a fixed seed gives the same samples
    with pytest.raises(GenlabError, match="class"):
        pipe(class_labels=[10])
    with pytest.raises(GenlabError, match="num_inference_steps=65"):
        pipe(class_labels=[0], num_inference_steps=65)


def test_reveal_schedule_counts_and_the_linear_cfg_fractions():
    from genlab.schedulers.masking import linear_cfg

    counts = reveal_counts(64, 16)
    assert counts == [1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6] and sum(counts) == 64
    still = [64 - sum(counts[: i + 1]) for i in range(16)]
    fractions = [(64 - s) / 64 for s in still]
    assert fractions[:2] == pytest.approx([0.0156, 0.0312], abs=1e-4)
    assert fractions[-2:] == pytest.approx([0.9062, 1.0], abs=1e-4)  # the last step reveals the rest
    assert linear_cfg(3.0, 64, still[-2]) == pytest.approx(1 + 2.0 * 58 / 64)
    assert reveal_counts(64, 64) == [1] * 64  # T = L: one position per step
    assert set(reveal_counts(256, 64)) <= set(range(1, 8))


def test_masking_invariants_of_a_training_step():
    m = model()
    lengths = []
    m.backbone.encoder_blocks[0].register_forward_pre_hook(lambda mod, args: lengths.append(args[0].shape[1]))
    tokens = torch.randn(6, 16, 4, generator=torch.Generator().manual_seed(6))
    buffer = m.condition(class_labels=torch.arange(6))
    for seed in range(5):
        m(tokens, buffer, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        from genlab.schedulers.masking import random_orders, truncnorm_ratio

        random_orders(6, 16, g)
        ratio = truncnorm_ratio(g)  # one ratio for the whole batch
        assert 0.7 <= ratio <= 1.0
        # the encoder sees the buffer (never masked) and the L - ceil(L m) visible tokens, the same in every row
        assert lengths[-1] == m.config.buffer_size + 16 - math.ceil(16 * ratio)


def test_the_config_holds_the_arguments_given():
    """Regression: diffusers maps positional super().__init__ arguments onto the signature without the
    ignore_for_config names, which once put MAR's head_steps = 1 into dropout (a model trained with dropout 1)."""
    import torch.nn as nn

    for dropout in (0.0, 0.1):
        m = TokenBridgeModel(sample_size=8, in_channels=1, patch_size=2, hidden_size=32, encoder_depth=1,
                             decoder_depth=1, num_heads=2, head_width=16, head_depth=1, head_heads=2, num_levels=8,
                             dropout=dropout)
        assert m.config.dropout == dropout and m.config.head_width == 16 and m.config.num_levels == 8
        assert {mod.p for mod in m.modules() if isinstance(mod, nn.Dropout)} == {dropout}
        assert "head_steps" not in m.config and "diffusion_batch_mul" not in m.config


def test_the_shipped_digits_pipeline_is_in_the_demo_with_mar_as_its_baseline():
    from pathlib import Path

    from genlab.demo import Demo

    demo = Demo(str(Path(__file__).resolve().parents[1] / "pipelines"), max_steps=20, max_batch=4)
    controls = demo.controls("tokenbridge-digits")
    assert [v for _, v in controls["compare"]] == ["baseline"] and controls["temperature"]["visible"]
    inputs = {"class_labels": "3", "num_inference_steps": 4, "guidance_scale": 3.0, "temperature": 1.0}
    result = demo.compare("tokenbridge-digits", "baseline", inputs)
    assert result["label_b"] == "baseline mar-digits" and "speed ratio" in result["text"]
