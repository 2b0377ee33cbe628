"""`genlab bench nar` on tiny untrained pipelines: forward counts (n^2 vs 2n - 1, the video's T + H + W - 2), the
speed rows, quality over seeds with its spread, the report, one-line errors."""

import json

import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab import registry
from genlab.eval.bench_nar import bench_nar
from genlab.models import ARModel, NARModel
from genlab.pipelines import ARPipeline, NARPipeline, NARVideoPipeline
from genlab.tokenizers import VQTokenizer

V = 32


def randomized(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_nar")
    kw = dict(vocab_size=V, num_classes=10, hidden_size=32, depth=1, num_heads=2)
    gray = VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=V)
    pipes = {"ar": ARPipeline(transformer=randomized(ARModel(grid_size=(4, 4), **kw)), image_tokenizer=gray),
             "nar": NARPipeline(transformer=randomized(NARModel(grid_size=(4, 4), **kw)), image_tokenizer=gray),
             "video": NARVideoPipeline(
                 transformer=randomized(NARModel(grid_size=(2, 4, 4), pos_embed="learned", **{**kw, "num_classes": 6})),
                 image_tokenizer=VQTokenizer.from_preset("tiny", in_channels=3, codebook_size=V))}
    for name, pipe in pipes.items():
        pipe.save_pretrained(root / name)
        info = {"dataset": "shapes" if name == "video" else "digits", "steps": 5,
                "sample": {"guidance_scale": 2.0, "temperature": 1.0}}
        (root / name / "training_info.json").write_text(json.dumps(info))
    return root


def test_bench_nar_counts_rows_quality_and_report(folders, tmp_path):
    out = tmp_path / "nar.md"
    res = bench_nar(str(folders / "ar"), str(folders / "nar"), str(folders / "video"), batch_size=2, repeats=1,
                    num_samples=10, seeds=(0, 1), threads=1, out=str(out))
    assert "nar" in registry.bench_names() and out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    rows = {r["grid"]: r for r in res["speed"]}
    assert (rows["4x4"]["ar_forward"], rows["4x4"]["nar_forward"]) == (16, 7)
    assert (rows["16x16"]["ar_forward"], rows["16x16"]["nar_forward"]) == (256, 31)
    assert (rows["4x8x8"]["ar_forward"], rows["4x8x8"]["nar_forward"]) == (256, 18)
    assert all(r["ar_seconds"] > 0 and r["nar_seconds"] > 0 and r["speedup"] > 0 for r in rows.values())
    assert res["video"]["forward"] == 2 + 4 + 4 - 2 and res["video"]["grid"] == "2x4x4"
    assert 0 <= res["video"]["frame_accuracy"] <= 1
    for q in res["quality"].values():
        assert len(q["accuracy"]) == len(q["fd"]) == 2 and q["accuracy_std"] >= 0 and q["parameters"] > 0
    assert set(res["verdict"]) == {"accuracy_not_worse", "fd_not_worse", "same_sampling"}
    assert torch.get_num_threads() == 1


def test_bench_nar_bad_input(folders, tmp_path, capsys):
    with pytest.raises(GenlabError, match="ARPipeline"):
        bench_nar(str(folders / "nar"), str(folders / "nar"), None, out=None)
    with pytest.raises(GenlabError, match="NARVideoPipeline"):
        bench_nar(str(folders / "ar"), str(folders / "nar"), str(folders / "ar"), batch_size=1, repeats=1,
                  num_samples=2, seeds=(0,), out=None)
    with pytest.raises(GenlabError, match="seed"):
        bench_nar(str(folders / "ar"), str(folders / "nar"), None, seeds=(-1,), out=None)
    capsys.readouterr()
    assert main(["bench", "nar", "--ar", str(tmp_path / "nowhere")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "no pipeline folder" in err[0]


def test_nar_ratios_are_measured_ratios_and_both_sides_sample_alike(folders, tmp_path):
    import statistics

    res = bench_nar(str(folders / "ar"), str(folders / "nar"), "", batch_size=2, repeats=2, num_samples=10,
                    seeds=(0,), threads=1, out=None)
    for row in res["speed"] + res["latency"]:
        assert row["speedup"] == pytest.approx(statistics.median(row["ar_times"]) / statistics.median(row["nar_times"]))
        assert row["ar_seconds"] == statistics.median(row["ar_times"])
    assert {r["batch_size"] for r in res["latency"]} == {1, 4}
    a, n = res["quality"]["AR"], res["quality"]["NAR"]
    # the same sampling settings (guidance, temperature, top-k/p), samples and seeds for the method and its baseline
    assert a["sample"] == n["sample"] and a["num_samples"] == n["num_samples"] and a["seeds"] == n["seeds"]
