"""genlab bench ett at a tiny budget: every arm trains from the same tokenizer, frozen arms keep it bit for bit,
the ETT arms change it, the caption attribute metric, generation scores of a pair and the report."""

import pytest
import torch

from genlab.errors import GenlabError
from genlab.eval.metrics import caption_attribute_accuracy


def test_caption_attribute_accuracy_reads_the_longest_phrase():
    truth = [{"shape": "star", "color": "red", "size": "small", "position": "top left", "centers": [[1, 2]]},
             {"shape": "circle", "color": "blue", "size": "large", "position": "left", "centers": [[3, 4]]}]
    right = ["a small red star at the top left", "a large blue circle on the left"]
    assert caption_attribute_accuracy(right, truth) == {"color": 1.0, "position": 1.0, "shape": 1.0, "size": 1.0,
                                                        "mean": 1.0}
    wrong = ["a small red star on the left", "a large blue"]  # "left" is not "top left"; no shape or position said
    got = caption_attribute_accuracy(wrong, truth)
    assert got["position"] == 0.0 and got["shape"] == 0.5 and got["color"] == 1.0 and got["mean"] == 0.625
    with pytest.raises(GenlabError, match="one attribute dict per caption"):
        caption_attribute_accuracy(right, truth[:1])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from genlab.training.recipe import load_recipe, run_recipe

    root = tmp_path_factory.mktemp("bench_ett")
    run_recipe(load_recipe("ibq-shapes", ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=2"]),
               str(root / "ibq"), str(root / "run-ibq"))
    return root / "ibq"


def test_bench_ett_arms_and_report(tokenizer, tmp_path, monkeypatch):
    from genlab.eval import bench_ett as bench
    from genlab.tokenizers import load_tokenizer

    trained = {}
    real_train_arms = bench.train_arms

    def spy(*args, **kwargs):
        arms = real_train_arms(*args, **kwargs)
        trained.update({arm: load_tokenizer(path + "/image_tokenizer").state_dict() for arm, path in arms.items()})
        return arms
    monkeypatch.setattr(bench, "train_arms", spy)
    out = tmp_path / "ett.md"
    res = bench.bench_ett(str(tokenizer), "", "", align_steps=2, tune_steps=2, alphas=(0.0, 0.25),
                          train_seeds=(0,), num_test=8, threads=1, out=str(out))
    assert out.read_text() == res["markdown"] and res["command"] in res["markdown"]
    assert list(res["captioning"]) == ["index-frozen", "embedding-frozen", "ETT α=0", "ETT α=0.25"]
    untouched = load_tokenizer(str(tokenizer)).state_dict()
    for arm, state in trained.items():
        same = all(torch.equal(state[k], untouched[k]) for k in untouched)
        assert same == arm.endswith("frozen"), arm  # only the ETT arms tune the tokenizer
    for arm, s in res["captioning"].items():
        assert 0 <= s["mean"]["mean"] <= 1 and len(s["mse"]["values"]) == 1
        if arm.endswith("frozen"):
            assert s["mse"]["mean"] == pytest.approx(res["untuned"]["mse"], rel=1e-5)
    v = res["verdict"]
    assert v["mse_ratio_alpha_0.25"] == pytest.approx(res["captioning"]["ETT α=0.25"]["mse"]["mean"] /
                                                      res["untuned"]["mse"])
    assert "generation_match_70" not in v and "summary" not in res


def test_bench_ett_errors(tmp_path):
    from genlab.eval.bench_ett import bench_ett

    with pytest.raises(GenlabError, match="no tokenizer folder"):
        bench_ett(str(tmp_path / "none"), "", "", out=None)
    with pytest.raises(GenlabError, match="include ETT's default 0.25"):
        bench_ett("", "", "", alphas=(0.0, 1.0), out=None)
    with pytest.raises(GenlabError, match="give both --ett and --frozen"):
        bench_ett("", str(tmp_path), "", out=None)


def test_bench_ett_generation_pair(tokenizer, tmp_path):
    from genlab.eval.bench_ett import bench_ett
    from genlab.training.recipe import load_recipe, run_recipe

    quick = ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=2"]
    run_recipe(load_recipe("ett-shapes-align", quick + [f"tokenizer.path={tokenizer}"]), str(tmp_path / "align"),
               str(tmp_path / "run-align"))
    run_recipe(load_recipe("ett-shapes", quick + [f"init={tmp_path / 'align'}"]), str(tmp_path / "gen"),
               str(tmp_path / "run-gen"))
    res = bench_ett("", str(tmp_path / "gen"), str(tmp_path / "gen"), num_samples=4, seeds=(0, 1), batch_size=2,
                    repeats=1, threads=1, out=None)
    tuned, frozen = res["generation"]["ETT (tuned)"], res["generation"]["frozen"]
    assert tuned["match"]["values"] == frozen["match"]["values"]  # the same folder, the same seeds
    for g in (tuned, frozen):
        assert len(g["fd"]["values"]) == 2
        assert all(m <= min(s, c) for m, s, c in zip(g["match"]["values"], g["shape_accuracy"]["values"],
                                                     g["color_accuracy"]["values"]))
    assert res["summary"]["speed_ratio"] == pytest.approx(res["seconds"]["frozen"] / res["seconds"]["ETT (tuned)"])
    assert res["captioning"] is None and "Tuned pipeline: shape and colour both right" in res["markdown"]
