"""`genlab bench ddt` on tiny untrained pipelines: report rows, call counts (K = ceil(N / r) for uniform and
statdp, N decoder calls), zero self-deviation, positive speed ratios, one-line errors."""

import json
import math

import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab import registry
from genlab.eval.bench import run_bench
from genlab.eval.bench_ddt import bench_ddt
from genlab.models import DDTModel, DiTModel
from genlab.pipelines import DDTPipeline, FlowDiTPipeline
from genlab.schedulers import FlowMatchScheduler
from genlab.tokenizers import PixelTokenizer

STEPS, RATES = 6, (2, 4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    ddt = DDTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=10).eval()
    torch.nn.init.normal_(ddt.final_layer.linear.weight, std=0.1)  # v ≢ 0, so sharing changes the samples
    torch.nn.init.normal_(ddt.final_layer.adaLN_modulation[0].weight, std=0.1)
    dit = DiTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=10).eval()
    paths = {}
    for name, cls, model in [("ddt", DDTPipeline, ddt), ("dit", FlowDiTPipeline, dit)]:
        pipe = cls(transformer=model, scheduler=FlowMatchScheduler(), image_tokenizer=PixelTokenizer(in_channels=1))
        path = root / name
        pipe.save_pretrained(path)
        (path / "training_info.json").write_text(json.dumps({"dataset": "digits", "steps": 7}))
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def result(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sub" / "ddt.md"
    return bench_ddt(str(folders["ddt"]), str(folders["dit"]), steps=STEPS, batch_size=2, rates=RATES, repeats=1,
                     num_samples=20, threads=1, out=str(out)), out


def test_report_rows_and_call_counts(result):
    res, out = result
    text = out.read_text()
    assert text == res["markdown"] and res["command"] in text
    names = ["none"] + [name.format(r) for r in RATES for name in ("uniform(r={})", "statdp(r={})",
                                                                   "statdp(r={}) re-timed")]
    assert [p["policy"] for p in res["policies"]] == names
    for name in names + ["DDT", "DiT", "threads"]:
        assert f"| {name} |" in text or name in text
    for p in res["policies"]:
        k = STEPS if p["rate"] is None else math.ceil(STEPS / p["rate"])
        assert p["encoder_calls"] == k and p["decoder_calls"] == STEPS and len(p["key_steps"]) == k
        assert isinstance(p["speedup"], float) and p["speedup"] > 0
        assert p["model_speedup"] >= 1.0 and 0.0 <= p["class_accuracy"] <= 1.0
    none = res["policies"][0]
    assert none["deviation"] == 0.0 and none["speedup"] == 1.0 and none["model_speedup"] == 1.0
    assert any(p["deviation"] > 0 for p in res["policies"][1:])
    for r in RATES:
        assert res["schedules"][r]["K"] == math.ceil(STEPS / r) and res["schedules"][r]["key_steps"][0] == 0
        row = next(p for p in res["policies"] if p["policy"] == f"statdp(r={r})")
        assert row["key_steps"] == res["schedules"][r]["key_steps"]  # the timed runs used the pre-solved schedule
        retimed = next(p for p in res["policies"] if p["policy"] == f"statdp(r={r}) re-timed")
        assert retimed["retime"] and not row["retime"] and retimed["key_steps"] == row["key_steps"]
        assert retimed["deviation"] != row["deviation"]  # the same key steps, another sampler
    # the 7-step test model's samples have no black background (nan); the real digits do
    assert all(isinstance(p["background_speckle"], float) for p in res["policies"])
    assert res["real_background_speckle"] >= 0 and "speckle" in text
    c = res["ddt_vs_dit"]
    assert c["DDT"]["training_steps"] == c["DiT"]["training_steps"] == 7
    assert c["DDT"]["parameters"] > 0 and c["DiT"]["frechet_distance"] >= 0 and c["ddt_over_dit_time"] > 0
    assert torch.get_num_threads() == 1  # restored (conftest sets 1 thread)


def test_bad_input_gives_one_line_errors(folders, tmp_path, capsys):
    assert "ddt" in registry.bench_names()
    with pytest.raises(GenlabError, match="unknown bench"):
        run_bench("nope")
    with pytest.raises(GenlabError, match="rate"):
        bench_ddt(str(folders["ddt"]), str(folders["dit"]), rates=(1,), out=None)
    with pytest.raises(GenlabError, match="DDTPipeline"):  # a DiT folder given as --ddt
        bench_ddt(str(folders["dit"]), str(folders["dit"]), out=None)
    capsys.readouterr()  # the loading bars of the calls above
    for args, match in [(["bench", "nope"], "unknown bench"),
                        (["bench", "ddt", "--ddt", str(tmp_path / "nowhere")], "no pipeline folder"),
                        (["bench", "ddt", "--steps", "0"], "positive integer"),
                        (["bench", "all", "--out", str(tmp_path / "x.md")], "--out")]:
        assert main(args) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines


def test_results_table_and_plot(result, tmp_path):
    from genlab.eval.report import write_results

    res, _ = result
    s = res["summary"]
    assert s["speed_ratio"] > 0 and 0 <= s["method_quality"]["class_accuracy"] <= 1 and "statdp" in s["method"]
    md, png = write_results({"ddt": res}, folder=str(tmp_path))
    text = open(md).read()
    assert s["method"] in text and s["command"] in text and "results.png" in text
    import PIL.Image

    with PIL.Image.open(png) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_printed_ratios_are_the_measured_times_ratios_on_shared_settings(result):
    import statistics

    res, _ = result
    times = res["times"]
    for p in res["policies"]:
        assert p["seconds"] == statistics.median(times[p["policy"]])
        assert p["speedup"] == pytest.approx(statistics.median(times["none"]) / statistics.median(times[p["policy"]]))
        assert p["latency_speedup"] == pytest.approx(statistics.median(res["latency_times"]["none"]) /
                                                     statistics.median(res["latency_times"][p["policy"]]))
        assert f"{p['speedup']:.2f}×" in res["markdown"]
    s = res["summary"]
    statdp = "statdp(r=4)"
    assert s["speed_ratio"] == pytest.approx(statistics.median(times["dit"]) / statistics.median(times[statdp]))
    # DDT and the DiT baseline were timed on the same call: seed, batch, steps, guidance (only the trick differs)
    calls = res["timed_calls"]
    shared = {k: v for k, v in calls["dit"].items()}
    for name, call in calls.items():
        assert {k: call[k] for k in shared} == shared, name
