"""genlab bench himar on tiny random pipelines: rows, counts, FLOP split, measured ratios, the fast-heads row and the
report."""

import json
import statistics

import pytest
import torch

from genlab.errors import GenlabError
from genlab.eval.bench_himar import bench_himar
from genlab.models import HiMARModel, MARModel
from genlab.pipelines.mar import HiMARPipeline, MARPipeline
from genlab.tokenizers import PixelTokenizer

KW = dict(sample_size=16, in_channels=1, patch_size=2, num_classes=10, head_steps=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_himar")
    torch.manual_seed(0)
    pipes = {"mar": MARPipeline(transformer=MARModel.from_preset("test", **KW), image_tokenizer=PixelTokenizer(1)),
             "himar": HiMARPipeline(transformer=HiMARModel.from_preset("test", **KW, head2_steps=3, head2_width=16,
                                                                          head2_depth=1),
                                    image_tokenizer=PixelTokenizer(1))}
    for name, pipe in pipes.items():
        pipe.save_pretrained(root / name)
        steps = 4 if name == "mar" else 2
        (root / name / "training_info.json").write_text(json.dumps(
            {"dataset": "digits", "steps": 3, "sample": {"num_inference_steps": steps, "guidance_scale": 2.0}}))
    return root


def test_bench_himar_rows_counts_ratios_and_report(folders, tmp_path):
    out = tmp_path / "himar.md"
    res = bench_himar(str(folders / "mar"), str(folders / "himar"), batch_size=2, repeats=2, num_samples=10,
                      seeds=(0, 1), threads=1, fast_head_steps=0, fast_head2_steps=0, out=str(out))
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    assert [s["batch_size"] for s in res["speed"]] == [1, 2]
    for s in res["speed"]:
        mar, himar = s["profiles"]["MAR"], s["profiles"]["Hi-MAR"]
        assert mar["parts"]["backbone"]["calls"] == 4 and mar["parts"]["head"]["calls"] == 4 * 2
        k1 = 16  # 4x4 low-res tokens: K1 = 4 x 4, one token per step
        assert himar["parts"]["backbone"]["calls"] == k1 + 2 and himar["parts"]["dense_head"]["calls"] == 2 * 3
        assert himar["parts"]["head"]["calls"] == k1 * 2
        assert 0 < mar["flops"]["backbone"] < mar["flops"]["total"] and 0 < himar["flops"]["heads"] < himar["flops"]["total"]
        ratio = statistics.median(s["times"]["MAR"]) / statistics.median(s["times"]["Hi-MAR"])
        assert s["himar_over_mar_speed"] == pytest.approx(ratio)
    q = res["quality"]
    assert len(q["MAR"]["accuracy"]) == 2 and q["Hi-MAR"]["parameters"] > q["MAR"]["parameters"]
    assert set(res["verdict"]) == {"fd_better", "fd_not_worse", "not_slower"}
    assert res["summary"]["speed_ratio"] == res["speed"][-1]["himar_over_mar_speed"]


def test_bench_himar_fast_row_uses_the_shorter_head_chains(folders, tmp_path):
    res = bench_himar(str(folders / "mar"), str(folders / "himar"), batch_size=2, repeats=2, num_samples=10,
                      seeds=(0,), threads=1, fast_head_steps=1, fast_head2_steps=2, out=str(tmp_path / "h.md"))
    k1 = 16
    for s in res["speed"]:
        fast = s["profiles"]["Hi-MAR fast"]
        assert fast["parts"]["head"]["calls"] == k1 * 1 and fast["parts"]["dense_head"]["calls"] == 2 * 2
        assert fast["parts"]["backbone"]["calls"] == s["profiles"]["Hi-MAR"]["parts"]["backbone"]["calls"]
        ratio = statistics.median(s["times"]["MAR"]) / statistics.median(s["times"]["Hi-MAR fast"])
        assert s["fast_over_mar_speed"] == pytest.approx(ratio)
        mar_fast = s["profiles"]["MAR fast"]  # MAR with the same 1-step MLP chain: 4 steps x 1 head pass
        assert mar_fast["parts"]["head"]["calls"] == 4 * 1 and mar_fast["parts"]["backbone"]["calls"] == 4
        ratio = statistics.median(s["times"]["MAR fast"]) / statistics.median(s["times"]["Hi-MAR fast"])
        assert s["fast_over_mar_fast_speed"] == pytest.approx(ratio)
    q = res["quality"]["Hi-MAR fast"]
    assert q["sample"]["head_steps"] == 1 and q["sample"]["head2_steps"] == 2
    assert res["quality"]["MAR fast"]["sample"]["head_steps"] == 1 and "head2_steps" not in res["quality"]["MAR fast"]["sample"]
    assert {"fast_fd_below", "fast_fd_not_worse", "fast_not_slower", "fast_pair_fd_below", "fast_pair_fd_not_worse",
            "fast_pair_not_slower"} <= set(res["verdict"])
    assert "Against MAR fast" in res["markdown"]
    assert "Hi-MAR fast" in res["markdown"] and res["summary"]["extra"]["fast"]["sample"]["head2_steps"] == 2


def test_bench_himar_fast_row_needs_both_chains(folders):
    with pytest.raises(GenlabError, match="fast_head2_steps"):
        bench_himar(str(folders / "mar"), str(folders / "himar"), fast_head_steps=3, fast_head2_steps=0, out=None)
