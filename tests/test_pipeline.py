"""FlowDiTPipeline: saving, loading through diffusers.DiffusionPipeline, determinism, CFG, bad input."""

import json

import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline

import genlab
from genlab import FlowDiTPipeline
from genlab.errors import GenlabError
from genlab.models import DiTModel
from genlab.pipelines.loading import load_pipeline
from genlab.schedulers import FlowMatchScheduler
from genlab.tokenizers import PixelTokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = DiTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3,
                                 class_names=["zero", "one", "two"])
    for p in model.parameters():  # random weights so outputs depend on labels, time and guidance
        torch.nn.init.normal_(p, std=0.05)
    pipe = FlowDiTPipeline(transformer=model.eval(), scheduler=FlowMatchScheduler(), image_tokenizer=PixelTokenizer(in_channels=1))
    path = tmp_path_factory.mktemp("pipe") / "dit"
    pipe.save_pretrained(path)
    return path


def test_diffusers_loads_the_genlab_pipeline_with_no_other_argument(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "FlowDiTPipeline"
    assert index["transformer"] == ["genlab", "DiTModel"]
    pipe = DiffusionPipeline.from_pretrained(saved)
    assert type(pipe) is genlab.FlowDiTPipeline
    out = pipe(class_labels=[2], num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert isinstance(out.images[0], PIL.Image.Image) and out.images[0].size == (8, 8)


def test_seeded_sampling_is_deterministic_and_labels_matter(saved):
    pipe = load_pipeline(str(saved))
    run = lambda labels, seed=0, **kw: pipe(class_labels=labels, num_inference_steps=5, output_type="pt",  # noqa: E731
                                            generator=torch.Generator().manual_seed(seed), **kw).images
    a, b = run([0, 1]), run([0, 1])
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(run([0, 1], seed=1), a)
    assert not torch.equal(run([2, 2]), a)
    assert torch.equal(run(["zero", "one"]), a)  # class names resolve through the model config


def test_guidance_one_equals_plain_conditional_sampling(saved):
    """With scale 1 the pipeline skips the unconditional half; an interval that never fires must give the same."""
    pipe = load_pipeline(str(saved))
    kw = dict(class_labels=[0, 2], num_inference_steps=6, output_type="pt")
    plain = pipe(guidance_scale=1.0, generator=torch.Generator().manual_seed(3), **kw).images
    gated = pipe(guidance_scale=5.0, guidance_interval=(0.99, 1.0), generator=torch.Generator().manual_seed(3), **kw).images
    guided = pipe(guidance_scale=5.0, generator=torch.Generator().manual_seed(3), **kw).images
    torch.testing.assert_close(plain, gated)
    assert not torch.allclose(plain, guided)


@pytest.mark.parametrize("kwargs,match", [
    (dict(class_labels=[3]), "out of range"),
    (dict(class_labels=[-1]), "out of range"),
    (dict(class_labels=["seven"]), "unknown class name"),
    (dict(class_labels=[0], num_inference_steps=0), "positive integer"),
    (dict(class_labels=[0], num_inference_steps=-5), "positive integer"),
    (dict(class_labels=[0], guidance_scale=-1.0), "guidance_scale"),
    (dict(class_labels=[0], output_type="gif"), "output_type"),
    (dict(class_labels=None), "class_labels is required"),
    (dict(class_labels=[0], latents=torch.zeros(1, 3, 8, 8)), "latents must have shape"),
])
def test_bad_input_gives_one_line_errors(saved, kwargs, match):
    pipe = load_pipeline(str(saved))
    with pytest.raises(GenlabError, match=match) as info:
        pipe(**kwargs)
    assert "\n" not in str(info.value)


def test_loading_errors(saved, tmp_path):
    with pytest.raises(GenlabError, match="no pipeline folder"):
        load_pipeline(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="model_index.json is missing"):
        load_pipeline(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(saved, broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(GenlabError, match="truncated"):
        DiffusionPipeline.from_pretrained(broken)  # the plain diffusers entry point gets the clear error too


def test_the_model_is_evaluated_at_the_scheduler_times_and_guided_as_stated():
    """A recording stand-in for the DiT: the pipeline calls it at exactly scheduler.timesteps (t = 0 noise), with
    [uncond ; cond] labels, and steps with the guided velocity."""
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    class Recorder(DiTModel):
        def forward(self, x, t, class_labels, return_dict=True):
            self.calls.append((t.clone(), class_labels.clone()))
            v = (class_labels != self.null_class).to(x.dtype).view(-1, 1, 1, 1).expand_as(x).clone()
            return Transformer2DModelOutput(sample=v)

    model = Recorder.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3)
    model.calls = []
    pipe = FlowDiTPipeline(transformer=model, scheduler=FlowMatchScheduler(shift=3.0),
                           image_tokenizer=PixelTokenizer(in_channels=1))
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = pipe(class_labels=[0, 2], num_inference_steps=5, guidance_scale=2.5, latents=noise, output_type="pt").images
    grid = pipe.scheduler.time_grid(5)
    assert [float(t[0]) for t, _ in model.calls] == pytest.approx(grid[:-1].tolist(), abs=1e-6)
    assert all(labels.tolist() == [3, 3, 0, 2] for _, labels in model.calls)
    # v_uncond = 0, v_cond = 1 -> guided v = 2.5 everywhere: x_1 = x_0 + 2.5 (sum of the dt = 1), in [0, 1] output
    expected = ((noise + 2.5).clamp(-1, 1) + 1) / 2
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
