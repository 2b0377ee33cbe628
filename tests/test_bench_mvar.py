"""genlab bench mvar at tiny sizes: rows per schedule and batch, attention pairs against the spec's closed forms,
measured ratios, Mamba time, the growth ladder, the report, quality on the shipped digits pair and one-line errors."""

import pytest

from genlab.errors import GenlabError
from genlab.eval.bench_mvar import LADDER, TINY, VAR_256, attention_pairs, bench_mvar, equal_parameter_depth

TINY_SIZES = dict(hidden_size=32, depth=2, num_heads=2, d_state=16, mamba_headdim=16, vocab_size=64,
                  latent_channels=8, repeats=1, threads=1)


def closed_forms(patch_nums):
    """Block-causal: sum_k p_k^2 cumL_k; block-diagonal: sum_k p_k^4 (spec mvar.md §10 check 1)."""
    cum, causal = 0, 0
    for p in patch_nums:
        cum += p * p
        causal += p * p * cum
    return {"VAR": causal, "M-VAR": sum(p ** 4 for p in patch_nums)}


def test_attention_pairs_are_the_closed_forms():
    assert attention_pairs(TINY) == closed_forms(TINY) == {"VAR": 11323, "M-VAR": 5746}
    assert attention_pairs(VAR_256) == closed_forms(VAR_256) == {"VAR": 286434, "M-VAR": 110468}


def test_speed_only_bench_rows_ratios_growth_and_report(tmp_path):
    out = tmp_path / "mvar.md"
    res = bench_mvar(var_path="", mvar_path="", batch_size=2, out=str(out), **TINY_SIZES)
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    assert res["quality"] is None and "summary" not in res
    assert res["mamba_scan"].startswith("genlab's chunked SSD scan") and res["mamba_scan"] in res["markdown"]
    assert "--device" not in res["command"] and "GPU" not in res["markdown"].splitlines()[0]
    assert [(r["num_tokens"], r["batch_size"]) for r in res["speed"]] == [(130, 1), (130, 2), (680, 1), (680, 2)]
    for r in res["speed"]:
        K = len(r["patch_nums"])
        assert r["forward_passes"] == {"VAR": K, "M-VAR": K}  # one pass per scale, both models
        assert r["attention_pairs"] == closed_forms(r["patch_nums"])
        assert r["mvar_over_var_speed"] == pytest.approx(r["seconds"]["VAR"] / r["seconds"]["M-VAR"])
        assert r["flop_ratio"] == pytest.approx(r["flops"]["M-VAR"] / r["flops"]["VAR"]) and r["flops"]["VAR"] > 0
        assert 0 < r["mamba_seconds"] < r["seconds"]["M-VAR"] * 3  # measured, and within one call's order
        assert r["parameters"]["M-VAR"] > r["parameters"]["VAR"]  # equal depth and width: Mamba adds parameters
    flops = {(r["num_tokens"], r["batch_size"]): r["flops"]["VAR"] for r in res["speed"]}
    assert flops[(680, 2)] > flops[(680, 1)] > flops[(130, 1)]
    assert [g["num_tokens"] for g in res["growth"]] == [sum(p * p for p in s) for s in LADDER]
    assert all(g["batch_size"] == 1 and g["mamba_seconds"] > 0 for g in res["growth"])
    assert res["verdict"]["not_slower_at_680"] == (res["speed"][-1]["seconds"]["M-VAR"]
                                                   <= res["speed"][-1]["seconds"]["VAR"])
    equal = res["equal_parameters"]
    assert [(e["num_tokens"], e["batch_size"]) for e in equal] == [(680, 1), (680, 2)]
    for e in equal:
        assert e["depth"]["VAR"] == 2 and e["depth"]["M-VAR"] == equal_parameter_depth(TINY_SIZES) == 1
        assert abs(e["parameters"]["M-VAR"] - e["parameters"]["VAR"]) < abs(
            res["speed"][-1]["parameters"]["M-VAR"] - e["parameters"]["VAR"])  # closer than at equal depth
    assert res["verdict"]["not_slower_at_680_equal_parameters"] == (equal[-1]["seconds"]["M-VAR"]
                                                                    <= equal[-1]["seconds"]["VAR"])


def test_quality_on_the_shipped_digits_pair(tmp_path):
    res = bench_mvar(var_path="pipelines/var-digits", mvar_path="pipelines/mvar-digits", num_samples=20,
                     seeds=(0, 1), batch_size=1, out=str(tmp_path / "mvar.md"), **TINY_SIZES)
    q = res["quality"]
    assert res["dataset"] == "digits" and set(q) == {"VAR", "M-VAR"}
    for name, folder in (("VAR", "pipelines/var-digits"), ("M-VAR", "pipelines/mvar-digits")):
        assert q[name]["pipeline"] == folder and len(q[name]["accuracy"]) == len(q[name]["fd"]) == 2
        assert q[name]["accuracy_mean"] >= 0.7  # trained pipelines: far above chance (0.1) on 20 samples a seed
        assert q[name]["fd_mean"] > 0 and q[name]["sample"]["top_p"] == 0.96  # each with its recipe's settings
    assert 0.85 <= q["M-VAR"]["parameters"] / q["VAR"]["parameters"] <= 1.15  # the pair is at equal parameters
    assert res["verdict"]["fd_at_or_below"] == (q["M-VAR"]["fd_mean"] <= q["VAR"]["fd_mean"])
    assert res["summary"]["baseline_quality"]["frechet_distance"] == q["VAR"]["fd_mean"]
    assert "Quality over sampling seeds" in res["markdown"]


def test_bench_bad_input(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GenlabError, match="no CUDA GPU is available here"):
        bench_mvar(var_path="", mvar_path="", device="cuda", out=None)
    with pytest.raises(GenlabError, match="give both --var and --mvar"):
        bench_mvar(var_path="pipelines/var-digits", mvar_path="", out=None)
    with pytest.raises(GenlabError, match="not a multiple of num_heads"):
        bench_mvar(var_path="", mvar_path="", hidden_size=30, num_heads=4, out=None)
    with pytest.raises(GenlabError, match="not a multiple of mamba_headdim"):
        bench_mvar(var_path="", mvar_path="", hidden_size=32, num_heads=2, mamba_headdim=48, out=None)
    with pytest.raises(GenlabError, match="expected a VARPipeline"):
        bench_mvar(var_path="pipelines/dit-digits", mvar_path="pipelines/dit-digits", out=None)
