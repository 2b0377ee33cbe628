"""genlab bench tokenbridge on tiny random pipelines: the reconstruction table, head speed rows, the NLL of fresh
AR and parallel heads, sampling ratios, quality, the report and one-line errors."""

import json

import pytest
import torch

from genlab.errors import GenlabError
from genlab.eval.bench_tokenbridge import bench_tokenbridge
from genlab.models import MARModel
from genlab.models.tokenbridge import TokenBridgeModel
from genlab.pipelines.mar import MARPipeline, TokenBridgePipeline
from genlab.tokenizers import PixelTokenizer

KW = dict(sample_size=16, in_channels=1, patch_size=2, num_classes=10, hidden_size=32, encoder_depth=1,
          decoder_depth=1, num_heads=2, head_width=32, head_depth=1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_tokenbridge")
    torch.manual_seed(0)
    pipes = {"mar": MARPipeline(transformer=MARModel(**KW, head_steps=3), image_tokenizer=PixelTokenizer(1)),
             "tb": TokenBridgePipeline(transformer=TokenBridgeModel(**KW, head_heads=2, num_levels=16,
                                                                    quant_scheme="uniform", value_range=[-1, 1],
                                                                    channel_order=[1, 0, 3, 2]),
                                       image_tokenizer=PixelTokenizer(1))}
    for name, pipe in pipes.items():
        pipe.save_pretrained(root / name)
        (root / name / "training_info.json").write_text(json.dumps(
            {"dataset": "digits", "steps": 3, "sample": {"num_inference_steps": 4, "guidance_scale": 2.0}}))
    return root


def test_bench_tokenbridge_tables_ratios_and_report(folders, tmp_path):
    out = tmp_path / "tokenbridge.md"
    res = bench_tokenbridge(str(folders / "tb"), str(folders / "mar"), levels=(4, 16, 64), num_recon=50,
                            nll_steps=3, nll_batch=4, num_test=20, batch_size=2, repeats=1, num_samples=10,
                            seeds=(0, 1), threads=1, out=str(out))
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    recon = {(r["scheme"], r["levels"]): r for r in res["reconstruction"]}
    assert set(recon) == {(s, b) for s in ("gaussian", "uniform") for b in (4, 16, 64)}
    uniform = [recon[("uniform", b)]["psnr"] for b in (4, 16, 64)]
    assert uniform == sorted(uniform) and res["verdict"]["psnr_monotone"]  # pixels: more levels, closer
    assert all(r["out_of_range"] == 0 for r in res["reconstruction"])  # pixels lie in [-1, 1]
    fd = [recon[("uniform", b)]["frechet_distance"] for b in (4, 16, 64)]
    assert fd[0] > fd[-1] >= 0 and res["continuous_fd"] >= 0  # coarser levels, further from the real images
    assert [h["tokens"] for h in res["heads"]] == [1, 64]
    for h in res["heads"]:
        assert h["passes"] == {"TokenBridge": 4, "MAR": 3}
        assert h["head_over_mar_speed"] == pytest.approx(h["seconds_per_token"]["MAR"] /
                                                         h["seconds_per_token"]["TokenBridge"])
    assert set(res["nll"]) == {"AR (fresh)", "parallel (fresh)", "AR (shipped, trained with the backbone)"}
    assert all(n["bits_per_position"] > 0 for n in res["nll"].values())
    assert [s["batch_size"] for s in res["speed"]] == [1, 2]
    assert len(res["quality"]["TokenBridge"]["accuracy"]) == 2 and res["dataset"] == "digits"
    assert res["summary"]["speed_ratio"] == res["speed"][-1]["tb_over_mar_speed"]


def test_bench_tokenbridge_bad_input(folders):
    with pytest.raises(GenlabError, match="levels must be >= 2"):
        bench_tokenbridge(str(folders / "tb"), str(folders / "mar"), levels=(1, 4), out=None)
    with pytest.raises(GenlabError, match="expected a TokenBridgePipeline"):
        bench_tokenbridge(str(folders / "mar"), str(folders / "mar"), out=None)
