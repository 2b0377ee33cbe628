"""Bad input across the package, one table: every entry must end in a one-line GenlabError whose message names the
problem — pipelines, the CLI, data, tokenizers, loading, training, the demo's handlers, eval and utils. Each method
adds its own rows here when it lands, so the table grows with the package."""

import contextlib
import functools
import io
import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from genlab.acceleration.key_steps import resolve_key_steps
from genlab.errors import GenlabError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pipelines"
NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------- tiny components (built once)
@functools.cache
def dit():
    from genlab.models import DiTModel
    from genlab.pipelines import FlowDiTPipeline
    from genlab.schedulers import FlowMatchScheduler
    from genlab.tokenizers import PixelTokenizer

    torch.manual_seed(0)
    model = DiTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3,
                                 class_names=["a", "b", "c"])
    pipe = FlowDiTPipeline(transformer=model, scheduler=FlowMatchScheduler(), image_tokenizer=PixelTokenizer(1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def ddt():
    from genlab.models import DDTModel
    from genlab.pipelines import DDTPipeline
    from genlab.schedulers import FlowMatchScheduler
    from genlab.tokenizers import PixelTokenizer

    torch.manual_seed(0)
    model = DDTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3)
    pipe = DDTPipeline(transformer=model, scheduler=FlowMatchScheduler(), image_tokenizer=PixelTokenizer(1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def vq():
    from genlab.tokenizers import VQTokenizer

    torch.manual_seed(0)
    return VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=16)


@functools.cache
def token(kind="ar", grid=(2, 2)):
    from genlab.models import ARModel, NARModel
    from genlab.pipelines import ARPipeline, NARPipeline, NARVideoPipeline
    from genlab.tokenizers import VQTokenizer

    torch.manual_seed(0)
    model_cls = ARModel if kind == "ar" else NARModel
    model = model_cls.from_preset("test", grid_size=list(grid), vocab_size=16, num_classes=3,
                                  pos_embed="learned" if len(grid) == 3 else "rope")
    if len(grid) == 3:
        pipe = NARVideoPipeline(transformer=model, image_tokenizer=VQTokenizer.from_preset(
            "tiny", in_channels=3, codebook_size=16))
    else:
        pipe = (ARPipeline if kind == "ar" else NARPipeline)(transformer=model, image_tokenizer=vq())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def himar():
    from genlab.models import HiMARModel
    from genlab.pipelines import HiMARPipeline
    from genlab.tokenizers import PixelTokenizer

    torch.manual_seed(0)
    model = HiMARModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3, head_steps=2,
                                   head2_steps=2)
    pipe = HiMARPipeline(transformer=model, image_tokenizer=PixelTokenizer(1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe_fn, **kwargs):
    defaults = {"class_labels": [0, 1], "output_type": "pt"}
    if pipe_fn in (dit, ddt, himar):
        defaults["num_inference_steps"] = 2
    return pipe_fn()(**{**defaults, **kwargs})


def cli(*args):
    """Run `genlab ARGS`; a one-line `error: ...` with exit status 2 is re-raised as that GenlabError."""
    from genlab.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in args])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err.getvalue()[-2000:])
    raise GenlabError(lines[0][len("error: "):])


@functools.cache
def folders(tmp: str):
    """Broken copies of a shipped folder, made once."""
    tmp = Path(tmp)
    out = {}
    src = SHIPPED / "dit-digits"
    for name in ("json", "class", "truncated", "depth", "nojson"):
        shutil.copytree(src, tmp / name)
        out[name] = tmp / name
    (out["json"] / "model_index.json").write_text("{ not json")
    (out["class"] / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    weights = out["truncated"] / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    config = json.loads((out["depth"] / "transformer" / "config.json").read_text())
    (out["depth"] / "transformer" / "config.json").write_text(json.dumps({**config, "depth": config["depth"] + 1}))
    (out["nojson"] / "model_index.json").unlink()
    (tmp / "empty-class" / "cats").mkdir(parents=True)
    (tmp / "empty-class" / "dogs").mkdir()
    PIL.Image.new("RGB", (8, 8)).save(tmp / "empty-class" / "cats" / "a.png")
    (tmp / "notes").mkdir()
    PIL.Image.new("RGB", (8, 8)).save(tmp / "notes" / "a.png")
    (tmp / "notes" / "readme.md").write_text("not an image")
    (tmp / "noimages").mkdir()
    (tmp / "afile").write_text("x")
    out["tmp"] = tmp
    return out


def demo():
    from genlab.demo import Demo

    return Demo(str(SHIPPED), max_steps=20, max_batch=4)


def demo_kwargs(**inputs):
    d = demo()
    spec = d.spec("dit-digits")
    base = {"class_labels": "3", "num_inference_steps": 4, "guidance_scale": 3.0}
    batch = inputs.pop("batch", 1)
    return d.call_kwargs(spec, {**base, **inputs}, batch=batch)


def G(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- the table: (id, action(tmp), message fragment)
CASES = [
    # pipelines: numbers
    ("guidance-nan", lambda t: call(dit, guidance_scale=NAN), "guidance_scale must be a finite number"),
    ("guidance-inf", lambda t: call(dit, guidance_scale=INF), "guidance_scale must be a finite number"),
    ("guidance-none", lambda t: call(dit, guidance_scale=None), "guidance_scale must be a number"),
    ("guidance-text", lambda t: call(dit, guidance_scale="3"), "guidance_scale must be a number"),
    ("guidance-negative", lambda t: call(dit, guidance_scale=-1.0), "guidance_scale must be >= 0"),
    ("interval-reversed", lambda t: call(dit, guidance_scale=2.0, guidance_interval=(0.8, 0.2)), "interval"),
    ("interval-one", lambda t: call(dit, guidance_scale=2.0, guidance_interval=(0.1,)), "pair"),
    ("interval-nan", lambda t: call(dit, guidance_scale=2.0, guidance_interval=(NAN, 1.0)), "guidance_interval"),
    ("steps-zero", lambda t: call(dit, num_inference_steps=0), "num_inference_steps must be a positive integer"),
    ("steps-huge", lambda t: call(dit, num_inference_steps=10**6), "more than the 1000"),
    ("steps-float", lambda t: call(dit, num_inference_steps=2.5), "num_inference_steps must be a positive"),
    ("steps-none", lambda t: call(dit, num_inference_steps=None), "num_inference_steps"),
    ("labels-none", lambda t: call(dit, class_labels=None), "class_labels is required"),
    ("labels-empty", lambda t: call(dit, class_labels=[]), "class_labels is empty"),
    ("labels-range", lambda t: call(dit, class_labels=[3]), "out of range"),
    ("labels-name", lambda t: call(dit, class_labels=["zebra"]), "unknown class name 'zebra'"),
    ("labels-float", lambda t: call(dit, class_labels=[1.5]), "class label must be an int"),
    ("output-type", lambda t: call(dit, output_type="jpg"), "output_type must be one of"),
    ("generator-int", lambda t: call(dit, generator=0), "generator must be a torch.Generator"),
    ("generator-numpy", lambda t: call(dit, generator=np.random.default_rng(0)), "got Generator"),
    ("generator-count", lambda t: call(dit, generator=[G(), G(), G()]), "one per sample: got 3 for a batch of 2"),
    ("generator-ints", lambda t: call(dit, generator=[1, 2]), "list of torch.Generators"),
    ("latents-shape", lambda t: call(dit, latents=torch.randn(2, 1, 4, 4)), "latents must have shape"),
    # DDT sharing
    ("ddt-sharing", lambda t: call(ddt, sharing="fast"), "unknown sharing 'fast'"),
    ("ddt-rate-zero", lambda t: call(ddt, sharing="uniform", refresh_rate=0), "positive integer"),
    ("ddt-rate-half", lambda t: call(ddt, sharing="uniform", refresh_rate=0.5), "refresh rate r"),
    ("ddt-k-too-big", lambda t: call(ddt, sharing="statdp", num_encoder_steps=3), "exceeds the 2 model evaluations"),
    ("ddt-both-names", lambda t: call(ddt, sharing="uniform", refresh_rate=2, sharing_ratio=2), "not both"),
    ("ddt-none-rate", lambda t: call(ddt, sharing="none", refresh_rate=2), "every step"),
    ("ddt-explicit-start", lambda t: __import__("genlab").ReusePolicy.explicit([1, 2]), "start at 0"),
    ("ddt-explicit-order", lambda t: __import__("genlab").ReusePolicy.explicit([0, 3, 2]), "strictly increasing"),
    # token pipelines
    ("ar-temperature-nan", lambda t: call(token, temperature=NAN), "temperature must be a finite number"),
    ("ar-temperature-negative", lambda t: call(token, temperature=-1.0), "temperature must be >= 0"),
    ("ar-temperature-none", lambda t: call(token, temperature=None), "temperature must be a number"),
    ("ar-top-k-negative", lambda t: call(token, top_k=-1), "top_k must be an integer >= 0"),
    ("ar-top-k-float", lambda t: call(token, top_k=1.5), "top_k must be an integer"),
    ("ar-top-p-zero", lambda t: call(token, top_p=0.0), "top_p must be > 0"),
    ("ar-top-p-big", lambda t: call(token, top_p=1.5), "top_p must be <= 1"),
    ("ar-top-p-nan", lambda t: call(token, top_p=NAN), "top_p must be a finite number"),
    ("ar-generator-count", lambda t: call(token, generator=[G()]), "one per sample: got 1 for a batch of 2"),
    ("ar-guidance-nan", lambda t: call(token, guidance_scale=NAN), "guidance_scale must be a finite number"),
    ("nar-labels-range", lambda t: token("nar")(class_labels=[7]), "out of range"),
    ("video-frames-zero", lambda t: token("nar", (2, 2, 2))(class_labels=[0], num_frames=0), "num_frames"),
    ("video-frames-many", lambda t: token("nar", (2, 2, 2))(class_labels=[0], num_frames=3), "beyond what"),
    ("video-frames-float", lambda t: token("nar", (2, 2, 2))(class_labels=[0], num_frames=1.5), "num_frames"),
    # Faster Diffusion: key steps of encoder propagation
    ("keys-out-of-range", lambda t: resolve_key_steps([0, 3, 60], 50), "out of range"),
    ("keys-not-from-zero", lambda t: resolve_key_steps([1, 3], 50), "must start at 0"),
    ("keys-unsorted", lambda t: resolve_key_steps([0, 5, 3], 50), "sorted"),
    ("keys-repeated", lambda t: resolve_key_steps([0, 3, 3], 50), "must not repeat"),
    ("keys-preset-other-n", lambda t: resolve_key_steps("50ls", 20), "defined for 50 sampling steps"),
    ("keys-unknown-preset", lambda t: resolve_key_steps("fast", 50), "unknown key-step preset"),
    # MAR / Hi-MAR
    ("mar-temperature-zero", lambda t: call(himar, temperature=0.0), "temperature must be > 0"),
    ("mar-head-steps", lambda t: call(himar, head_steps=0), "head_steps must be a positive integer"),
    ("mar-head2-steps", lambda t: call(himar, head2_steps=-1), "head2_steps must be a positive integer"),
    ("mar-too-many-steps", lambda t: call(himar, num_inference_steps=99), "more than the 16 tokens"),
    ("mar-prompt-to-class-model", lambda t: call(himar, prompt="a cat"), "class-conditional"),
    ("mar-generator-list", lambda t: call(himar, generator=[G(), G()]), "pass a torch.Generator"),
    ("mar-labels-range", lambda t: call(himar, class_labels=[9]), "out of range"),
    ("mar-head2-kind", lambda t: __import__("genlab").HiMARModel.from_preset("test", head2="unet"), "head2 must be"),
    ("mar-odd-grid", lambda t: __import__("genlab").HiMARModel.from_preset("test", sample_size=6, patch_size=2),
     "even token grid"),
    ("mar-latents-shape", lambda t: himar().transformer.tokens_from_latents(torch.zeros(1, 1, 5, 5)),
     "expects latents"),
    # components that do not belong together
    ("dit-with-vq", lambda t: __import__("genlab").FlowDiTPipeline(
        transformer=dit().transformer, scheduler=dit().scheduler, image_tokenizer=vq())(class_labels=[0]),
     "continuous image_tokenizer"),
    ("dit-with-rgb", lambda t: __import__("genlab").FlowDiTPipeline(
        transformer=dit().transformer, scheduler=dit().scheduler,
        image_tokenizer=__import__("genlab").PixelTokenizer(3))(class_labels=[0]), "latent channels"),
    ("ar-with-pixels", lambda t: __import__("genlab").ARPipeline(
        transformer=token().transformer, image_tokenizer=__import__("genlab").PixelTokenizer(1))(class_labels=[0]),
     "discrete (VQ) image_tokenizer"),
    ("ar-codebook", lambda t: __import__("genlab").ARPipeline(
        transformer=token().transformer, image_tokenizer=__import__("genlab").VQTokenizer.from_preset(
            "tiny", in_channels=1, codebook_size=32))(class_labels=[0]), "codebook size 32"),
    # loading
    ("load-missing", lambda t: load(t / "nowhere"), "no pipeline folder"),
    ("load-no-index", lambda t: load(folders(str(t))["nojson"]), "model_index.json is missing"),
    ("load-bad-json", lambda t: load(folders(str(t))["json"]), "not valid JSON"),
    ("load-unknown-class", lambda t: load(folders(str(t))["class"]), "unknown pipeline class 'NoSuchPipeline'"),
    ("load-truncated", lambda t: load(folders(str(t))["truncated"]), "truncated"),
    ("load-config-edited", lambda t: load(folders(str(t))["depth"]), "do not match its config.json"),
    ("load-wrong-class", lambda t: __import__("genlab").DiTModel.from_pretrained(SHIPPED / "ar-digits",
                                                                                 subfolder="image_tokenizer"),
     "holds a VQTokenizer, not a DiTModel"),
    ("load-no-config", lambda t: __import__("genlab").DiTModel.from_pretrained(t), "missing config.json"),
    ("tokenizer-missing", lambda t: tok_load(t / "nowhere"), "missing folder"),
    ("tokenizer-is-model", lambda t: tok_load(SHIPPED / "dit-digits" / "transformer"), "not one of"),
    # tokenizers
    ("encode-nan", lambda t: vq().encode(torch.full((1, 1, 8, 8), NAN)), "NaN"),
    ("encode-255", lambda t: vq().encode(torch.full((1, 1, 8, 8), 255.0)), "must lie in [-1, 1]"),
    ("encode-channels", lambda t: vq().encode(torch.zeros(1, 3, 8, 8)), "1 channel(s), got 3"),
    ("encode-int", lambda t: vq().encode(torch.zeros(1, 1, 8, 8, dtype=torch.long)), "floating point"),
    ("encode-3d", lambda t: vq().encode(torch.zeros(1, 8, 8)), "(B, C, H, W)"),
    ("encode-odd-size", lambda t: vq().encode(torch.zeros(1, 1, 7, 7)), "multiples of 2"),
    ("decode-ids-range", lambda t: vq().decode(torch.full((1, 4, 4), 99)), "ids must lie in [0, 16)"),
    ("decode-ids-float", lambda t: vq().decode(torch.zeros(1, 4, 4)), "integer tensor"),
    ("tokenizer-preset", lambda t: __import__("genlab").VQTokenizer.from_preset("huge"), "unknown preset 'huge'"),
    ("tokenizer-field", lambda t: __import__("genlab").VQTokenizer.from_preset("tiny", colour=3), "unknown config"),
    ("model-preset", lambda t: __import__("genlab").DiTModel.from_preset("giant"), "unknown DiT preset"),
    # data
    ("data-name", lambda t: data("mnist"), "unknown data set 'mnist'"),
    ("data-split", lambda t: data("digits", split="valid"), "unknown split 'valid'"),
    ("data-size", lambda t: data("digits", image_size=0), "image_size"),
    ("data-seed", lambda t: data("digits", seed=-1), "seed"),
    ("data-option", lambda t: data("digits", colour=True), "colour"),
    ("folder-missing", lambda t: data("imagefolder", root=t / "nowhere"), "no such folder"),
    ("folder-empty-class", lambda t: data("imagefolder", root=folders(str(t))["tmp"] / "empty-class"),
     "holds no images"),
    ("folder-not-image", lambda t: data("imagefolder", root=folders(str(t))["tmp"] / "notes"), "readme.md"),
    ("folder-no-images", lambda t: data("imagefolder", root=folders(str(t))["tmp"] / "noimages"), "no images"),
    ("shapes-samples", lambda t: data("shapes", num_samples=0), "num_samples"),
    # training and recipes
    ("config-steps", lambda t: train_config(steps=0), "steps must be a positive integer"),
    ("config-key", lambda t: train_config(stpes=10), "unknown TrainConfig key"),
    ("config-lr", lambda t: train_config(lr=-1.0), "lr must be a positive number"),
    ("config-precision", lambda t: train_config(mixed_precision="fp8"), "mixed_precision"),
    ("recipe-unknown", lambda t: recipe("no-such-recipe"), "unknown recipe"),
    ("recipe-override", lambda t: recipe("dit-digits", ["train.steps"]), "must look like section.key=value"),
    ("recipe-kind", lambda t: build({"kind": "warp", "data": {"name": "digits"}}), "unknown recipe kind 'warp'"),
    ("recipe-model-type", lambda t: build(recipe("dit-digits", ["model.depth=abc"])), "model.depth must be int"),
    ("recipe-seed", lambda t: build(recipe("dit-digits", ["train.seed=-1"])), "train.seed"),
    # CLI (one line on stderr, exit status 2)
    ("cli-sample-steps", lambda t: cli("sample", SHIPPED / "dit-digits", "--steps", 0, "--out", t / "s.png"),
     "positive integer"),
    ("cli-sample-guidance", lambda t: cli("sample", SHIPPED / "dit-digits", "--guidance", "nan", "--steps", 2,
                                          "--out", t / "s.png"), "guidance_scale must be a finite number"),
    ("cli-sample-out-folder", lambda t: cli("sample", SHIPPED / "dit-digits", "--out", t / "no" / "s.png"),
     "does not exist"),
    ("cli-sample-out-suffix", lambda t: cli("sample", SHIPPED / "dit-digits", "--out", t / "s.bmp"), ".png"),
    ("cli-sample-video-suffix", lambda t: cli("sample", SHIPPED / "nar-shapes-video", "--out", t / "s.png"), ".gif"),
    ("cli-sample-prompt", lambda t: cli("sample", SHIPPED / "dit-digits", "--prompt", "a cat", "--out", t / "s.png"),
     "takes no --prompt"),
    ("cli-sample-labels", lambda t: cli("sample", SHIPPED / "dit-digits", "--labels", 99, "--out", t / "s.png"),
     "out of range"),
    ("cli-token-steps", lambda t: cli("sample", SHIPPED / "ar-digits", "--steps", 3, "--out", t / "s.png"),
     "has no --steps"),
    ("cli-train-set-type", lambda t: cli("train", "dit-digits", "--set", "model.depth=abc", "--run-dir", t / "r"),
     "model.depth"),
    ("cli-train-output-file", lambda t: cli("train", "dit-digits", "--output-dir", folders(str(t))["tmp"] / "afile",
                                            "--run-dir", t / "r"), "is a file"),
    ("cli-train-overwrite", lambda t: cli("train", "dit-digits", "--output-dir", SHIPPED / "dit-digits",
                                          "--run-dir", t / "r"), "--overwrite"),
    ("cli-bench-name", lambda t: cli("bench", "warp"), "unknown bench 'warp'"),
    ("cli-bench-steps", lambda t: cli("bench", "ddt", "--steps", 0), "steps must be a positive integer"),
    ("cli-bench-all-out", lambda t: cli("bench", "all", "--out", t / "x.md"), "--out names one report"),
    ("cli-eval-missing", lambda t: cli("eval", t / "nowhere"), "no such folder"),
    ("cli-eval-samples", lambda t: cli("eval", SHIPPED / "dit-digits", "--num-samples", 0), "num_samples"),
    # demo handlers
    ("demo-unknown", lambda t: demo().spec("warp"), "unknown pipeline 'warp'"),
    ("demo-steps", lambda t: demo_kwargs(num_inference_steps=500), "num_inference_steps must be between 1 and 20"),
    ("demo-batch", lambda t: demo_kwargs(batch=99), "batch size must be between 1 and 4"),
    ("demo-guidance-text", lambda t: demo_kwargs(guidance_scale="abc"), "guidance_scale must be a number"),
    ("demo-guidance-inf", lambda t: demo_kwargs(guidance_scale="inf"), "guidance_scale must be a finite number"),
    ("demo-label-empty", lambda t: demo_kwargs(class_labels=""), "pick a class label"),
    ("demo-acceleration", lambda t: demo().call_kwargs(demo().spec("ddt-digits"), {
        "class_labels": "1", "num_inference_steps": 4, "guidance_scale": 3.0},
        acceleration={"sharing": "warp"}), "sharing must be one of"),
    ("demo-compare-mode", lambda t: demo().compare("ddt-digits", "warp", {"class_labels": "1",
                                                                         "num_inference_steps": 2,
                                                                         "guidance_scale": 3.0}),
     "cannot compare 'warp'"),
    ("demo-compare-none", lambda t: demo().compare("dit-digits", None, {"class_labels": "1"}),
     "no acceleration switch and no baseline"),
    # eval and utils
    ("eval-labels-shape", lambda t: metric("class_accuracy", torch.zeros(2, 1, 8, 8), [0], "digits"),
     "labels must have shape (2,)"),
    ("eval-fd-one", lambda t: metric("frechet_distance", torch.zeros(1, 1, 8, 8), torch.zeros(3, 1, 8, 8), "digits"),
     "at least 2 real"),
    ("eval-psnr-shapes", lambda t: metric("psnr", torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)), "same shape"),
    ("eval-nan", lambda t: metric("psnr", torch.full((1, 1, 8, 8), NAN), torch.zeros(1, 1, 8, 8)), "NaN"),
    ("eval-colour", lambda t: metric("color_accuracy", torch.zeros(1, 3, 8, 8), ["mauve"]), "unknown colour"),
    ("eval-classifier", lambda t: metric("load_classifier", "cifar"), "no shipped classifier 'cifar'"),
    ("video-suffix", lambda t: video([frame()], t / "clip.avi"), "(.gif) or MP4"),
    ("video-fps", lambda t: video([frame()], t / "clip.gif", fps=0), "fps must be > 0"),
    ("video-empty", lambda t: video([], t / "clip.gif"), "at least one frame"),
    ("grid-empty", lambda t: __import__("genlab.utils").utils.image_grid([]), "at least one image"),
]


def load(path):
    from genlab.pipelines.loading import load_pipeline

    return load_pipeline(str(path))


def tok_load(path):
    from genlab.tokenizers import load_tokenizer

    return load_tokenizer(str(path))


def data(name, **kwargs):
    from genlab.data import load_dataset

    return load_dataset(name, **kwargs)


def train_config(**kwargs):
    from genlab.training import TrainConfig

    return TrainConfig.from_dict(kwargs)


def recipe(name, overrides=()):
    from genlab.training.recipe import load_recipe

    return load_recipe(name, list(overrides))


def build(recipe_dict):
    from genlab import registry

    return registry.recipe_kind(recipe_dict["kind"])(recipe_dict)


def metric(name, *args):
    import genlab.eval

    return getattr(genlab.eval, name)(*args)


def video(frames, path, fps=4.0):
    from genlab.utils import save_video

    return save_video(frames, str(path), fps=fps)


def frame():
    return PIL.Image.new("RGB", (8, 8))


def test_the_table_is_large_and_has_unique_ids():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 80


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.mark.parametrize("action,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_one_line_error_naming_the_problem(action, fragment, tmp):
    with pytest.raises(GenlabError) as info:
        action(tmp)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message and "Traceback" not in message
