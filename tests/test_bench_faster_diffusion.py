"""genlab bench faster-diffusion on a tiny random UNet pipeline: rows, measured ratios, the FLOP ceiling, key-step
choices at one K with their deviation from the plain samples, the report and one-line errors."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from genlab.errors import GenlabError
from genlab.eval.bench_faster_diffusion import bench_faster_diffusion
from genlab.pipelines.unet import UNetPipeline
from genlab.tokenizers import PixelTokenizer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_fd") / "unet"
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=11)
    UNetPipeline(unet, DDIMScheduler(beta_schedule="squaredcos_cap_v2"), PixelTokenizer(in_channels=1),
                 class_names=[str(i) for i in range(10)]).save_pretrained(root)
    (root / "training_info.json").write_text(json.dumps(
        {"dataset": "digits", "steps": 3, "sample": {"num_inference_steps": 50, "guidance_scale": 2.0}}))
    return root


def test_bench_rows_ratios_ceiling_key_steps_and_report(folder, tmp_path):
    out = tmp_path / "fd.md"
    res = bench_faster_diffusion([str(folder)], batch_size=2, repeats=1, num_samples=4, seeds=(0,),
                                 template_samples=2, threads=1, out=str(out))
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    row = res["rows"][0]
    assert [s["batch_size"] for s in row["speed"]] == [1, 2]
    for s in row["speed"]:
        assert s["speedup"]["plain"] == 1.0 and s["flop_ceiling"]["plain"] == 1.0
        # parallel and sequential skip the same encoder work: the same FLOPs, a ceiling above 1
        assert s["flops"]["50ls parallel"] == s["flops"]["50ls sequential"] < s["flops"]["plain"]
        assert s["flop_ceiling"]["50ls parallel"] > 1.0
        assert s["seconds"]["plain"] / s["seconds"]["50ls parallel"] == pytest.approx(s["speedup"]["50ls parallel"])
    q = row["quality"]
    assert list(q) == ["plain", "50ls", "uniform:6", "statdp", "[0]"]
    assert [len(q[k]["key_steps"]) for k in q] == [50, 9, 9, 9, 1] and q["[0]"]["key_steps"] == [0]
    assert q["statdp"]["key_steps"][0] == 0 and q["uniform:6"]["key_steps"] == list(range(0, 50, 6))
    assert "deviation_mean" not in q["plain"] and all(q[k]["deviation_mean"] > 0 for k in ("50ls", "statdp", "[0]"))
    assert res["summary"]["speed_ratio"] == row["speed"][-1]["speedup"]["50ls parallel"]


def test_bench_bad_input(folder, tmp_path):
    with pytest.raises(GenlabError, match="num_key_steps=60 is more than the 50"):
        bench_faster_diffusion([str(folder)], num_key_steps=60, out=None)
    with pytest.raises(GenlabError, match="at least one UNet pipeline"):
        bench_faster_diffusion([], out=None)
    with pytest.raises(GenlabError, match="expected a UNetPipeline or UNetVideoPipeline"):
        bench_faster_diffusion(["pipelines/dit-digits"], out=None, num_samples=2, seeds=(0,))
