"""VAR and M-VAR (spec mvar.md §10 checks 1-5 and 7): mask pair counts, no leakage across scales, sampling equal
to the teacher-forced forward on the sampled pyramid, M-VAR's carried Mamba state equal to the official prefix
re-run, CFG unguided at the first scale with VAR's linear ramp, d16 parameter counts on the meta device, and
one-line errors. Untrained tiny models on an untrained tiny tokenizer: no weights needed."""

import pytest
import torch

from genlab.errors import GenlabError
from genlab.models.mvar import MVARModel, block_diagonal_mask
from genlab.models.sampling import generate_tokens
from genlab.models.var import VARModel, block_causal_mask
from genlab.schedulers import GuidanceSchedule
from genlab.tokenizers import MultiScaleVQTokenizer

PATCH_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
MODELS = {"var": VARModel, "mvar": MVARModel}


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return MultiScaleVQTokenizer.from_preset("tiny", in_channels=1).eval()


def model(name, seed=0, **kw):
    torch.manual_seed(seed)
    extra = {"mamba_headdim": 32, "d_state": 16, "mamba_chunk_size": 16} if name == "mvar" else {}
    m = MODELS[name].from_preset("test", **{**extra, **kw}).eval()
    with torch.no_grad():  # lift VAR's near-zero gate init so every branch visibly matters in these checks
        for block in m.blocks:
            block.ada_lin[-1].weight.normal_(0, 0.05)
    return m


def teacher_input(tok, seed=1, b=2):
    x = torch.rand(b, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        return tok.idx_bl_to_var_input(tok.img_to_idx_bl(x))


def test_mask_pair_counts():
    # block-causal: sum_k p_k^2 * (tokens up to scale k); block-diagonal: sum_k p_k^4
    assert int(block_causal_mask(PATCH_256).sum()) == 286_434
    assert int(block_diagonal_mask(PATCH_256).sum()) == 110_468
    tiny = (1, 2, 3, 4, 6, 8)
    diag = block_diagonal_mask(tiny)
    assert int(diag.sum()) == 5_746 and torch.equal(diag, diag.T)
    start = 0
    for p in tiny:  # each diagonal block all true, nothing off the diagonal blocks
        n = p * p
        assert diag[start:start + n, start:start + n].all() and not diag[start:start + n, start + n:].any()
        start += n
    assert torch.equal(block_causal_mask(tiny) & diag, diag)


@pytest.mark.parametrize("name", list(MODELS))
def test_no_leakage_from_finer_scales(name, tok):
    m = model(name)
    x = teacher_input(tok)
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        base = m(labels, x)
        for k in (2, 4):  # perturb the teacher inputs of scale k (positions of scale k, offset by the start token)
            start = sum(p * p for p in m.patch_nums[:k])
            end = start + m.patch_nums[k] ** 2
            y = x.clone()
            y[:, start - 1:end - 1] += 1.0
            out = m(labels, y)
            assert torch.equal(out[:, :start], base[:, :start]), "a coarser scale saw a finer one"
            assert not torch.allclose(out[:, start:end], base[:, start:end])


@pytest.mark.parametrize("name", list(MODELS))
def test_sampling_equals_the_teacher_forced_forward_on_the_sampled_pyramid(name, tok):
    m = model(name)
    labels = torch.tensor([3, 7])
    s = generate_tokens(m, labels, guidance=1.0, generator=torch.Generator().manual_seed(0), return_logits=True,
                        state_kwargs={"next_input": tok.next_scale_input})
    assert s.num_forward == len(m.patch_nums) == 6 and s.tokens.shape == (2, 130)
    with torch.no_grad():
        forward = m(labels, tok.idx_bl_to_var_input(tok.split_ids(s.tokens)))
    assert (forward - s.logits).abs().max() < 1e-4


def test_mvar_carried_state_equals_the_official_prefix_rerun(tok):
    carried, rerun = model("mvar"), model("mvar", recompute_prefix=True)
    assert rerun.load_state_dict(carried.state_dict()) is not None
    runs = [generate_tokens(m, torch.tensor([0, 5]), guidance=3.0, generator=torch.Generator().manual_seed(4),
                            return_logits=True, state_kwargs={"next_input": tok.next_scale_input})
            for m in (carried, rerun)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert (runs[0].logits - runs[1].logits).abs().max() < 1e-5


def test_cfg_ramps_by_scale_and_leaves_the_first_scale_unguided(tok):
    m = model("var")
    schedule = GuidanceSchedule(2.5, "linear")  # VAR's cfg = 1.5: weight 1 + 1.5 k / (K - 1)
    assert [schedule(m.guidance_progress(k)) for k in range(6)] == pytest.approx([1 + 1.5 * k / 5 for k in range(6)])
    labels = torch.tensor([2, 9])
    kwargs = dict(generator=torch.Generator().manual_seed(0), return_logits=True,
                  state_kwargs={"next_input": tok.next_scale_input})
    guided = generate_tokens(m, labels, guidance=schedule, **kwargs)
    kwargs["generator"] = torch.Generator().manual_seed(0)
    plain = generate_tokens(m, labels, guidance=1.0, **kwargs)
    assert torch.allclose(guided.logits[:, :1], plain.logits[:, :1], atol=1e-6)  # k = 0: the conditional logits
    assert not torch.allclose(guided.logits[:, 1:], plain.logits[:, 1:], atol=1e-3)


def test_d16_parameter_counts_on_the_meta_device():
    kw = dict(patch_nums=PATCH_256, vocab_size=4096, latent_channels=32, num_classes=1000)
    with torch.device("meta"):
        var, mvar = VARModel.from_preset("d16", **kw), MVARModel.from_preset("d16", **kw)
    assert var.num_parameters == pytest.approx(310e6, rel=0.01)  # VAR-d16's published 310M
    assert mvar.num_parameters == pytest.approx(464e6, rel=0.01)  # 27 C^2 per block instead of 18 C^2


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_round_trip(name, tmp_path, tok):
    m = model(name)
    m.save_pretrained(tmp_path / name)
    back = MODELS[name].from_pretrained(tmp_path / name).eval()
    assert type(back) is type(m) and back.patch_nums == m.patch_nums
    assert {k: v for k, v in back.config.items() if not k.startswith('_') and k != 'patch_nums'} == \
        {k: v for k, v in m.config.items() if not k.startswith('_') and k != 'patch_nums'}
    x = teacher_input(tok)
    with torch.no_grad():
        assert torch.equal(back(torch.tensor([0, 1]), x), m(torch.tensor([0, 1]), x))


def test_bad_inputs_are_one_line_errors(tok):
    m = model("var")
    x = teacher_input(tok)
    with pytest.raises(GenlabError, match=r"var_input of shape \(B, 129, 16\)"):
        m(torch.tensor([0, 1]), x[:, :-1])
    with pytest.raises(GenlabError, match=r"class labels must lie in \[0, 10\]"):
        m(torch.tensor([0, 11]), x)
    with pytest.raises(GenlabError, match="strictly increasing"):
        VARModel(patch_nums=(1, 3, 2))
    with pytest.raises(GenlabError, match="next_scale_input"):
        generate_tokens(m, torch.tensor([0]))
    with pytest.raises(GenlabError, match="top_k"):
        generate_tokens(m, torch.tensor([0]), top_k=-1, state_kwargs={"next_input": tok.next_scale_input})
    with pytest.raises(GenlabError, match="top_p"):
        generate_tokens(m, torch.tensor([0]), top_p=1.5, state_kwargs={"next_input": tok.next_scale_input})
    with pytest.raises(GenlabError, match="class_labels"):
        generate_tokens(m, torch.tensor([12]), state_kwargs={"next_input": tok.next_scale_input})


@pytest.mark.parametrize("recipe, cls", [("var-digits", "VARPipeline"), ("mvar-digits", "MVARPipeline")])
def test_recipes_train_save_and_load_with_diffusers(recipe, cls, tmp_path, tok):
    from diffusers import DiffusionPipeline

    from genlab.training.recipe import load_recipe, run_recipe

    tok.save_pretrained(tmp_path / "msvq")
    overrides = [f"tokenizer.path={tmp_path / 'msvq'}", "train.steps=2", "train.batch_size=4",
                 "train.checkpoint_every=2", "model.hidden_size=64", "model.depth=1"]
    summary = run_recipe(load_recipe(recipe, overrides), str(tmp_path / "pipe"), str(tmp_path / "run"))
    assert summary["step"] == 2 and all(torch.isfinite(torch.tensor(summary["losses"])))
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == cls
    out = pipe(class_labels=[0, "7"], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (2, 1, 16, 16) and pipe.last_num_forward == 6
    again = pipe(class_labels=[0, "7"], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(out.images, again.images)  # a fixed seed gives the same samples
    with pytest.raises(GenlabError, match="top_k"):
        pipe(class_labels=[0], top_k=-1)
    with pytest.raises(GenlabError, match="top_p"):
        pipe(class_labels=[0], top_p=0)
    with pytest.raises(GenlabError, match="class"):
        pipe(class_labels=[10])


def test_the_pipeline_refuses_a_tokenizer_of_another_pyramid(tok):
    from genlab.pipelines.var import VARPipeline

    pipe = VARPipeline(model("var", patch_nums=(1, 2, 4, 8)), tok)
    with pytest.raises(GenlabError, match="disagree on patch_nums"):
        pipe(class_labels=[0])


def test_the_shipped_pair_is_in_the_demo_with_var_as_the_baseline_of_mvar():
    from pathlib import Path

    from genlab.demo import Demo

    demo = Demo(str(Path(__file__).resolve().parents[1] / "pipelines"), max_steps=20, max_batch=4)
    controls = demo.controls("mvar-digits")
    assert [v for _, v in controls["compare"]] == ["baseline"] and not controls["num_inference_steps"]["visible"]
    inputs = {"class_labels": "3", "guidance_scale": 2.5, "temperature": 1.0}
    result = demo.compare("mvar-digits", "baseline", inputs)
    assert result["label_b"] == "baseline var-digits" and "speed ratio" in result["text"]
