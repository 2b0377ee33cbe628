"""bf16 autocast and torch.compile as sampling options of every pipeline (genlab.pipelines.sampling_modes)."""

import pytest
import torch
from diffusers import DiffusionPipeline

import genlab  # noqa: F401
from genlab.errors import GenlabError
from genlab.pipelines.sampling_modes import compile_pipeline, compile_plan, why_compile_cannot_run, sampling_precision
from test_shipped_pipelines import FOLDERS, ROOT


def _dit():
    pipe = DiffusionPipeline.from_pretrained(ROOT / "dit-digits")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe):
    return pipe(class_labels=[0, 7], num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                output_type="pt").images


def test_fp32_is_the_plain_call_and_bf16_runs_the_matmuls_in_bf16():
    pipe = _dit()
    plain = _sample(pipe)
    with sampling_precision(pipe, "fp32"):
        assert torch.equal(_sample(pipe), plain)
    seen = []
    handle = pipe.transformer.blocks[0].attn.qkv.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    try:
        with sampling_precision(pipe, "bf16"):
            low = _sample(pipe)
    finally:
        handle.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert low.dtype == torch.float32 and low.shape == plain.shape
    difference = (low - plain).abs().mean().item()
    assert 0 < difference < 0.05  # rounding, not another sample


def test_an_unknown_precision_is_named():
    with pytest.raises(GenlabError, match="unknown sampling precision 'fp8'.*fp32, bf16"):
        sampling_precision(_dit(), "fp8")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_every_shipped_network_declares_blocks_it_has(folder):
    """Regional compilation finds the repeated blocks in every genlab network (a stale class name in
    `_repeated_blocks` would silently compile nothing); diffusers' UNet2DModel, which declares none, compiles whole."""
    pipe = DiffusionPipeline.from_pretrained(folder)
    plan = compile_plan(pipe)
    network = "unet" if "unet" in pipe.components else "transformer"
    assert network in plan
    declared = getattr(pipe.components[network], "_repeated_blocks", None)
    assert plan[network].startswith("repeated blocks: ") if declared else plan[network] == "whole module"
    assert "text_encoder" not in plan


@pytest.mark.slow
def test_compiled_sampling_equals_eager_within_fp32_tolerance():
    reason = why_compile_cannot_run()
    if reason:
        pytest.skip(reason)
    pipe = _dit()
    eager = _sample(pipe)
    assert compile_pipeline(pipe) == {"transformer": "repeated blocks: AdaLNBlock"}
    compiled = _sample(pipe)
    assert torch.allclose(compiled, eager, atol=1e-4), (compiled - eager).abs().max()
