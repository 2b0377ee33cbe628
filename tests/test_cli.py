"""The `genlab` command line: help texts, sample/train/eval happy paths and one-line errors for bad input."""

import json
import os
import shutil
import subprocess
import sys

import PIL.Image
import pytest
import torch

from genlab.cli import build_parser, main
from genlab.models import DiTModel
from genlab.pipelines import FlowDiTPipeline
from genlab.schedulers import FlowMatchScheduler
from genlab.tokenizers import PixelTokenizer


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = DiTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=10)
    pipe = FlowDiTPipeline(transformer=model, scheduler=FlowMatchScheduler(), image_tokenizer=PixelTokenizer(in_channels=1))
    path = tmp_path_factory.mktemp("cli") / "pipe"
    pipe.save_pretrained(path)
    return path


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, match):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]


def test_every_flag_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"genlab {name}: {action.option_strings or action.dest} has no help text"


def test_sample_writes_a_grid(pipe_dir, tmp_path, capsys):
    out = tmp_path / "s.png"
    code, stdout, _ = run_cli(capsys, "sample", pipe_dir, "--labels", 0, 1, 2, "--num-per-label", 2, "--steps", 3, "--out", out)
    assert code == 0 and "wrote 6 samples" in stdout
    width, height = PIL.Image.open(out).size
    assert height >= 3 * 256 and width >= 2 * 256  # each sample at least --size (256) px tall by default
    code, _, _ = run_cli(capsys, "sample", pipe_dir, "--labels", 0, "--steps", 2, "--size", 0, "--out", out)
    assert code == 0 and PIL.Image.open(out).size[1] < 20  # --size 0: native resolution


def test_sample_in_bf16_writes_the_grid_it_names(pipe_dir, tmp_path, capsys):
    out = tmp_path / "s.png"
    code, stdout, _ = run_cli(capsys, "sample", pipe_dir, "--labels", 0, 1, "--steps", 2, "--size", 0, "--out", out,
                              "--precision", "bf16")
    assert code == 0 and "wrote 2 samples" in stdout and PIL.Image.open(out).size[1] < 40


def test_bench_help_shows_the_defaults_the_code_uses(capsys):
    import inspect

    from genlab.eval.bench_ddt import bench_ddt

    with pytest.raises(SystemExit):
        main(["bench", "ddt", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    default = inspect.signature(bench_ddt).parameters["ddt_path"].default
    assert f"DDT pipeline folder (default: {default})" in text and default == "pipelines/ddt-fashion"


def test_output_problems_are_refused_before_any_work(pipe_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", pipe_dir, "--out", tmp_path / "no-such-folder" / "s.png")
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "sample", pipe_dir, "--out", tmp_path / "s.tiff")
    assert_one_line_error(code, err, ".png")
    code, _, err = run_cli(capsys, "train", "dit-digits", "--output-dir", pipe_dir, "--run-dir", tmp_path / "r")
    assert_one_line_error(code, err, "--overwrite")  # a folder holding another model is never replaced silently
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,match", [
    (["--labels", "12"], "out of range"),
    (["--labels", "cat"], "unknown class name"),
    (["--steps", "0"], "positive integer"),
    (["--steps", "-4"], "positive integer"),
])
def test_sample_bad_arguments(pipe_dir, tmp_path, capsys, args, match):
    code, _, err = run_cli(capsys, "sample", pipe_dir, *args, "--out", tmp_path / "x.png")
    assert_one_line_error(code, err, match)


def test_sample_missing_truncated_and_mismatched_pipelines(pipe_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", tmp_path / "nowhere")
    assert_one_line_error(code, err, "no pipeline folder")

    broken = tmp_path / "truncated"
    shutil.copytree(pipe_dir, broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    code, _, err = run_cli(capsys, "sample", broken)
    assert_one_line_error(code, err, "truncated")

    mismatched = tmp_path / "mismatched"
    shutil.copytree(pipe_dir, mismatched)
    config_file = mismatched / "transformer" / "config.json"
    config = json.loads(config_file.read_text())
    config["depth"] = 5
    config_file.write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "sample", mismatched)
    assert_one_line_error(code, err, "do not match")


def test_train_bad_input(tmp_path, capsys):
    out = ["--output-dir", tmp_path / "o", "--run-dir", tmp_path / "r"]
    code, _, err = run_cli(capsys, "train", "dit-digits", "--data", "mnist-nope", *out)
    assert_one_line_error(code, err, "mnist-nope")
    code, _, err = run_cli(capsys, "train", "no-such-recipe", *out)
    assert_one_line_error(code, err, "unknown recipe")
    code, _, err = run_cli(capsys, "train", "dit-digits", "--steps", 0, *out)
    assert_one_line_error(code, err, "steps")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "train", "dit-digits", "--data", "imagefolder", "--data-root", empty, *out)
    assert_one_line_error(code, err, "no images")
    folder = tmp_path / "mixed"
    folder.mkdir()
    PIL.Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "notes.md").write_text("not an image")
    code, _, err = run_cli(capsys, "train", "dit-digits", "--data", "imagefolder", "--data-root", folder, *out)
    assert_one_line_error(code, err, "notes.md")


def test_eval_needs_a_dataset_for_an_unknown_pipeline(pipe_dir, capsys, tmp_path):
    code, _, err = run_cli(capsys, "eval", pipe_dir)
    assert_one_line_error(code, err, "--dataset")
    code, _, err = run_cli(capsys, "eval", tmp_path / "nothing")
    assert_one_line_error(code, err, "no such folder")


def test_train_then_sample_end_to_end(tmp_path, capsys):
    """A real (tiny) recipe run through the CLI writes a loadable pipeline folder."""
    out, run = tmp_path / "pipe", tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "dit-digits", "--steps", 3, "--batch-size", 8, "--checkpoint-every", 2,
                              "--set", "model.depth=1", "--set", "model.hidden_size=32", "--set", "model.num_heads=2",
                              "--output-dir", out, "--run-dir", run)
    assert code == 0, stdout
    info = json.loads((out / "training_info.json").read_text())
    assert info["dataset"] == "digits" and info["steps"] == 3
    assert sorted(os.listdir(run / "checkpoints")) == ["step-000002", "step-000003"]
    code, _, _ = run_cli(capsys, "sample", out, "--labels", "7", "--steps", 2, "--out", tmp_path / "s.png")
    assert code == 0


def test_console_script_prints_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "genlab.cli", "sample", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no pipeline folder at {tmp_path / 'missing'}"]


@pytest.mark.slow
def test_accelerate_launch_two_processes_trains_and_checkpoints(tmp_path):
    """`accelerate launch --cpu --num_processes 2 -m genlab.cli train ...` runs real DDP (gloo) and checkpoints."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = ["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "genlab.cli", "train", "dit-digits", "--steps", "4", "--batch-size", "8",
           "--checkpoint-every", "4", "--set", "model.depth=1", "--set", "model.hidden_size=32",
           "--set", "model.num_heads=2", "--output-dir", str(tmp_path / "pipe"), "--run-dir", str(tmp_path / "run")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(tmp_path / "run" / "checkpoints") == ["step-000004"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["num_processes"] == 2
    assert (tmp_path / "pipe" / "model_index.json").is_file()


def test_train_and_eval_a_tokenizer_reports_psnr(tmp_path, capsys):
    """Tokenizer recipes train through the same trainer; `genlab eval` reports reconstruction PSNR/SSIM."""
    out = tmp_path / "kl"
    code, _, _ = run_cli(capsys, "train", "kl-fashion", "--data", "digits", "--steps", 2, "--batch-size", 8,
                         "--output-dir", out, "--run-dir", tmp_path / "run")
    assert code == 0
    code, stdout, _ = run_cli(capsys, "eval", out, "--dataset", "digits", "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["images"] == 359 and 0 < result["psnr"] < 60 and -1 <= result["ssim"] <= 1
