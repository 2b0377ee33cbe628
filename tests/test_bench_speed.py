"""genlab bench speed on a tiny random pipeline: the matmul peak, rows per batch, FLOP shares, the exclusive time
split by part, the profile, the report and its errors."""

import json
import statistics
import time

import pytest
import torch
import torch.nn as nn

from genlab.errors import GenlabError
from genlab.eval.bench_speed import PartTimer, _profile, attention_kernels, bench_speed, matmul_peak, pipeline_parts
from genlab.eval.harness import check_device, device_clock, synchronized
from genlab.models import MARModel
from genlab.pipelines.mar import MARPipeline
from genlab.tokenizers import PixelTokenizer


class Sleeper(nn.Module):
    def __init__(self, seconds, inner=None):
        super().__init__()
        self.seconds, self.inner = seconds, inner

    def forward(self):
        time.sleep(self.seconds)
        if self.inner is not None:
            self.inner()


def test_part_timer_is_exclusive():
    head = Sleeper(0.06)
    net = Sleeper(0.03, head)
    timer = PartTimer({"network": [net], "head": [head]})
    start = time.perf_counter()
    net()
    total = time.perf_counter() - start
    timer.remove()
    assert timer.seconds["head"] == pytest.approx(0.06, abs=0.02)
    assert timer.seconds["network"] == pytest.approx(0.03, abs=0.02)  # the head's time is not counted twice
    assert sum(timer.seconds.values()) <= total + 1e-6
    net()  # hooks removed: no more time is added
    assert timer.seconds["head"] < 0.09


def test_matmul_peak_is_a_positive_rate():
    peak = matmul_peak(sizes=(64, 128), repeats=2)
    assert set(peak["by_size"]) == {64, 128} and peak["gflops"] == max(peak["by_size"].values()) > 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_speed") / "mar"
    torch.manual_seed(0)
    pipe = MARPipeline(transformer=MARModel.from_preset("test", sample_size=16, in_channels=1, patch_size=2,
                                                        num_classes=10, head_steps=2),
                       image_tokenizer=PixelTokenizer(1))
    pipe.save_pretrained(root)
    (root / "training_info.json").write_text(json.dumps(
        {"dataset": "digits", "steps": 3, "sample": {"num_inference_steps": 3, "guidance_scale": 2.0}}))
    return root


def test_bench_speed_rows_shares_split_and_report(folder, tmp_path):
    out = tmp_path / "speed.md"
    res = bench_speed([str(folder)], batch_size=2, repeats=2, top_ops=3, threads=1, out=str(out))
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    peak = res["peak"]["gflops"]
    (p,) = res["pipelines"]
    assert p["class"] == "MARPipeline" and [r["batch_size"] for r in p["rows"]] == [1, 2]
    one, two = p["rows"]
    assert one["flops_per_image"] > 0 and two["flops_per_image"] == pytest.approx(one["flops_per_image"], rel=0.01)
    for r in p["rows"]:
        assert r["seconds"] == pytest.approx(statistics.median(r["times"]))
        assert r["share_of_peak"] == pytest.approx(r["flops_per_image"] * r["batch_size"] / r["seconds"] / 1e9 / peak)
    assert set(p["parts"]) == {"network", "head", "decode", "rest"}  # no text encoder in a class pipeline
    assert sum(p["parts"].values()) == pytest.approx(1.0) and p["parts"]["head"] > 0 and p["parts"]["network"] > 0
    assert len(p["top_ops"]) == 3 and all(o["op"].startswith("aten::") or o["op"] for o in p["top_ops"])
    assert f"{100 * two['share_of_peak']:.0f} %" in res["markdown"]
    kernels = p["attention_kernels"]["fp32"]  # MAR's blocks call SDPA: the profile names the kernel it ran
    assert kernels and all(k.startswith("aten::_") and n > 0 for k, n in kernels.items())
    assert "GPU" not in res["markdown"].splitlines()[0] and "gpu" not in res["machine"]


def test_pipeline_parts_names_the_head(folder):
    from genlab.pipelines.loading import load_pipeline

    parts = pipeline_parts(load_pipeline(str(folder)))
    assert parts["network"][0] is not None and [type(m).__name__ for m in parts["head"]] == ["MLPDiffusionHead"]


def test_bench_speed_errors(tmp_path):
    with pytest.raises(GenlabError, match="not a pipeline folder"):
        bench_speed([str(tmp_path)], out=None)
    with pytest.raises(GenlabError, match="batch_size"):
        bench_speed([str(tmp_path)], batch_size=0, out=None)


def test_a_pipeline_that_fails_is_reported_and_the_others_timed(folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    for weights in (broken / "transformer").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    res = bench_speed([str(broken), str(folder)], batch_size=2, repeats=1, top_ops=0, threads=1, out=None)
    assert [p["pipeline"] for p in res["pipelines"]] == [str(folder)]
    (f,) = res["failed"]
    assert f["pipeline"] == str(broken) and f["error"] and f"broken: {f['error']}" in res["markdown"]
    with pytest.raises(GenlabError, match="no pipeline could be timed: .*broken"):
        bench_speed([str(broken)], batch_size=2, repeats=1, top_ops=0, threads=1, out=None)


def test_bench_device_checks(monkeypatch, tmp_path):
    assert check_device("cpu") == torch.device("cpu")
    f = lambda: 3  # noqa: E731
    assert synchronized(f, "cpu") is f and device_clock("cpu") is time.perf_counter  # no waits on CPU
    with pytest.raises(GenlabError, match="unknown device 'gpu0'"):
        check_device("gpu0")
    with pytest.raises(GenlabError, match="not supported by the benches"):
        check_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GenlabError, match="no CUDA GPU is available here"):
        bench_speed([str(tmp_path)], device="cuda", out=None)


def test_attention_kernels_name_the_sdpa_kernel_that_ran():
    q = torch.randn(1, 2, 8, 4)
    events = _profile(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q), torch.device("cpu"))
    kernels = attention_kernels(events)
    assert kernels and all(n == 1 for n in kernels.values())
    assert attention_kernels(_profile(lambda: q @ q.transpose(-1, -2), torch.device("cpu"))) == {}


def test_bench_speed_times_bf16_against_fp32_in_the_same_run(folder, tmp_path):
    res = bench_speed([str(folder)], batch_size=4, repeats=2, top_ops=0, precisions=["bf16"], threads=1, out=None)
    assert res["arguments"]["precisions"] == ["fp32", "bf16"] and "--precisions fp32 bf16" in res["command"]
    assert set(res["peaks"]) == {"fp32", "bf16"} and res["peaks"]["bf16"]["gflops"] > 0
    (p,) = res["pipelines"]
    for row in p["rows"]:
        v = row["variants"]["bf16"]
        assert v["speedup"] == pytest.approx(row["seconds"] / v["median"]) and len(v["seconds"]) == 2
    q = p["variant_quality"]
    assert set(q) == {"fp32", "bf16"} and q["fp32"]["psnr_vs_fp32"] is None
    assert 0 <= q["bf16"]["class_accuracy"] <= 1 and q["bf16"]["psnr_vs_fp32"] > 10  # rounding, not noise
    assert "| mar | bf16 | 4 |" in res["markdown"].replace(folder.name, "mar")
    assert "--device" not in res["command"]  # the CPU default is left out of the command line
    with pytest.raises(GenlabError, match="unknown sampling precision 'fp16'"):
        bench_speed([str(folder)], precisions=["fp16"], out=None)


def test_the_compile_switch_takes_no_value(capsys):
    from genlab.cli import bench_parser

    args = bench_parser("speed").parse_args(["--compile", "--precisions", "bf16"])
    assert args.compile is True and args.precisions == ["bf16"]
    assert bench_parser("speed").parse_args([]).compile is None  # off: the function's default
    from genlab.eval.bench_speed import BENCH

    assert BENCH.command({"compile": True, "precisions": ["fp32", "bf16"]}).endswith(
        "--precisions fp32 bf16 --compile")
