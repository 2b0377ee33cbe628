"""Tests of the shared training loop (genlab.training) with a tiny MLP denoiser on seeded random 8x8 images."""

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_model

from genlab.errors import GenlabError
from genlab.training import TrainConfig, Trainer, derive_seed, list_checkpoints, load_checkpoint
from genlab.training.trainer import ShardedBatchSampler

sys.path.insert(0, os.path.dirname(__file__))  # the toy parts live beside the multi-process script
from ddp_train_script import DenoiseObjective, DictDataset, TinyNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_config(**overrides):
    # 64 items / batch 8 = 8 steps per epoch, so 12 steps cross an epoch boundary; cosine + warm-up make the
    # scheduler state matter on resume.
    base = {"steps": 12, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 5, "log_every": 1, "ema_decay": 0.99,
            "warmup_steps": 3, "lr_schedule": "cosine"}
    return TrainConfig(**{**base, **overrides})


def make_trainer(out, config, model=None, objective=None, **kw):
    return Trainer(model or TinyNet(), objective or DenoiseObjective(), DictDataset(), config, out, **kw)


def read_log(out):
    with open(os.path.join(out, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def steps_of(out):
    return [int(os.path.basename(p).split("-")[1]) for p in list_checkpoints(os.path.join(out, "checkpoints"))]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def test_loss_goes_down_logs_samples_and_keeps_objective_frozen(tmp_path):
    seen = []

    def sample_fn(model, step):
        seen.append((step, {k: v.clone() for k, v in model.state_dict().items()}, model.training))
        return Image.new("RGB", (8, 8))

    objective = DenoiseObjective()
    frozen_before = objective.frozen.weight.detach().clone()
    config = make_config(steps=60, lr_schedule="constant", warmup_steps=0, log_every=10, sample_every=30,
                         checkpoint_every=20)
    model = TinyNet()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(tmp_path, config, model=model, objective=objective, sample_fn=sample_fn)
    summary = trainer.train()

    losses = summary["losses"]
    assert summary["step"] == 60 and len(losses) == 60 and summary["loss"] == losses[-1]
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
    log = read_log(tmp_path)
    assert [e["step"] for e in log] == [10, 20, 30, 40, 50, 60]
    assert all({"loss", "lr", "noise_std"} <= e.keys() for e in log)
    assert [e["loss"] for e in log] == [losses[s - 1] for s in (10, 20, 30, 40, 50, 60)]
    # samples: saved per sample step, drawn from an eval-mode EMA copy
    assert sorted(os.listdir(tmp_path / "samples")) == ["step-000030.png", "step-000060.png"]
    assert [s for s, _, _ in seen] == [30, 60] and not any(training for _, _, training in seen)
    ema = trainer.ema_model()
    assert all(torch.equal(seen[-1][1][k], v) for k, v in ema.state_dict().items())
    live = trainer.unwrapped_model()
    assert live is model and model.training
    # EMA (with warm-up) moved away from the initial weights but lags the live ones
    w = "net.1.weight"
    assert not torch.equal(ema.state_dict()[w], live.state_dict()[w])
    assert (ema.state_dict()[w] - init[w]).abs().max() > 1e-3
    # the objective's parameters are frozen and untouched
    assert not objective.frozen.weight.requires_grad and not objective.training
    assert torch.equal(objective.frozen.weight, frozen_before)
    assert steps_of(tmp_path) == [40, 60]


class CrashingObjective(DenoiseObjective):
    """Stops the run abnormally when it is called for step `at` (grad_accum=1: one call per step)."""

    def __init__(self, at, how):
        super().__init__()
        self.at, self.how = at, how

    def forward(self, model, batch, generator):
        if self.calls + 1 == self.at:
            if self.how == "error":
                raise RuntimeError("simulated crash")
            if self.how == "keyboard":
                raise KeyboardInterrupt
            if self.how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # the handler lets step `at` finish, then stops
        return super().forward(model, batch, generator)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    trainer = make_trainer(out, make_config())
    summary = trainer.train()
    return trainer, summary, read_log(out)


@pytest.mark.parametrize(
    "how, error, saved",
    [("error", RuntimeError, [5]), ("keyboard", KeyboardInterrupt, [5, 7]), ("sigint", KeyboardInterrupt, [5, 8])],
)
def test_exact_resume_after_abnormal_stop(tmp_path, reference_run, how, error, saved):
    ref, ref_summary, ref_log = reference_run
    assert ref_summary["step"] == 12 and ref_summary["start_step"] == 0
    handler_before = signal.getsignal(signal.SIGINT)

    crashing = make_trainer(tmp_path, make_config(), objective=CrashingObjective(at=8, how=how))
    with pytest.raises(error):
        crashing.train()
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert steps_of(tmp_path) == saved  # a kill loses at most the work since the last checkpoint

    # A new process would build the model from scratch: use another init to prove the weights come from disk.
    resumed = make_trainer(tmp_path, make_config(), model=TinyNet(seed=123))
    summary = resumed.train()
    start = saved[-1]
    assert summary["start_step"] == start and summary["step"] == 12
    assert_same_weights(resumed.unwrapped_model(), ref.unwrapped_model())
    assert_same_weights(resumed.ema_model(), ref.ema_model())
    assert summary["losses"] == ref_summary["losses"][start:]
    log = read_log(tmp_path)
    assert [e["step"] for e in log] == list(range(1, 13))  # lines of the crashed run past the checkpoint dropped
    assert [e["loss"] for e in log[5:]] == [e["loss"] for e in ref_log[5:]]
    assert [e["lr"] for e in log] == [e["lr"] for e in ref_log]


def test_randomness_derives_from_seed_step_and_rank(tmp_path, reference_run):
    _, ref_summary, _ = reference_run
    seeds = []

    class Recording(DenoiseObjective):
        def forward(self, model, batch, generator):
            seeds.append(generator.initial_seed())
            return super().forward(model, batch, generator)

    summary = make_trainer(tmp_path, make_config(seed=1), objective=Recording()).train()
    assert seeds == [derive_seed(1, 0, step, 0) for step in range(1, 13)]
    assert len(set(seeds)) == 12 and derive_seed(1, 0, 1, 0) != derive_seed(1, 0, 1, 1)
    assert summary["losses"] != ref_summary["losses"]  # another seed, another run


def test_data_order_is_a_fresh_permutation_per_epoch_sharded_over_ranks():
    def epoch(e, rank, world=2, batch=4, n=50):  # 50 // 8 = 6 micro-steps per epoch, 2 items left out
        sampler = ShardedBatchSampler(n, batch, rank, world, seed=0, start=6 * e, stop=6 * (e + 1))
        return [i for b in sampler for i in b]

    first = epoch(0, 0) + epoch(0, 1)
    assert len(first) == len(set(first)) == 48  # ranks disjoint, no repeats within an epoch
    assert epoch(1, 0) != epoch(0, 0) and epoch(0, 0) == epoch(0, 0)
    resumed = list(ShardedBatchSampler(50, 4, 0, 2, seed=0, start=9, stop=12))
    assert resumed == list(ShardedBatchSampler(50, 4, 0, 2, seed=0, start=0, stop=12))[9:]


def test_interrupt_during_a_parameter_update_writes_no_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, make_config(checkpoint_every=3))
    ema_step = trainer.ema.step

    def interrupted_in_step_5(parameters):  # optimizer has stepped, EMA not: neither step 4 nor step 5
        if trainer.ema.optimization_step == 4:
            raise KeyboardInterrupt
        ema_step(parameters)

    trainer.ema.step = interrupted_in_step_5
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert steps_of(tmp_path) == [3]  # no "step 4" holding step 5's half-applied update


def test_rerun_with_resume_false_starts_over_and_reproduces(tmp_path, reference_run):
    ref, ref_summary, _ = reference_run
    make_trainer(tmp_path, make_config(steps=6)).train()
    trainer = make_trainer(tmp_path, make_config(), model=TinyNet())
    summary = trainer.train(resume=False)
    assert summary["start_step"] == 0 and summary["losses"] == ref_summary["losses"]
    assert_same_weights(trainer.unwrapped_model(), ref.unwrapped_model())
    assert [e["step"] for e in read_log(tmp_path)] == list(range(1, 13))


def test_half_written_checkpoint_is_ignored_and_only_newest_are_kept(tmp_path):
    make_trainer(tmp_path, make_config(steps=10, checkpoint_every=3, keep_checkpoints=2)).train()
    assert steps_of(tmp_path) == [9, 10]
    partial = tmp_path / "checkpoints" / "step-000011.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half written")
    assert steps_of(tmp_path) == [9, 10]

    summary = make_trainer(tmp_path, make_config(steps=13, checkpoint_every=3, keep_checkpoints=2)).train()
    assert summary["start_step"] == 10 and summary["step"] == 13
    assert not partial.exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["step-000012", "step-000013"]


@pytest.mark.parametrize("name, damage", [
    ("model.safetensors", "truncate"),
    ("ema.safetensors", "truncate"),
    ("optimizer.pt", "garbage"),
    ("trainer_state.json", "garbage"),
])
def test_corrupt_checkpoint_is_an_error_naming_it(tmp_path, name, damage):
    make_trainer(tmp_path, make_config(steps=4, checkpoint_every=2)).train()
    path = tmp_path / "checkpoints" / "step-000004" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00not a checkpoint")
    with pytest.raises(GenlabError, match=r"checkpoint .*step-000004 is unreadable") as info:
        make_trainer(tmp_path, make_config(steps=6, checkpoint_every=2)).train()
    assert name in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_restores_global_rng_states(tmp_path):
    trainer = make_trainer(tmp_path, make_config(steps=2))
    trainer.train()
    path = trainer.save_checkpoint(2)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    load_checkpoint(path, trainer.model, trainer.ema, trainer.optimizer, trainer.scheduler)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_resume_with_another_model_shape_is_an_error(tmp_path):
    make_trainer(tmp_path, make_config(steps=2)).train()
    with pytest.raises(GenlabError, match="does not fit this model"):
        make_trainer(tmp_path, make_config(steps=4), model=TinyNet(hidden=16)).train()


def test_config_validation_and_round_trip():
    with pytest.raises(GenlabError, match=r"\['lerning_rate', 'stepz'\]"):
        TrainConfig.from_dict({"steps": 3, "stepz": 4, "lerning_rate": 1e-3})
    config = TrainConfig.from_dict({"steps": 3, "betas": [0.8, 0.99], "mixed_precision": "bf16"})
    assert config.betas == (0.8, 0.99)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad in ({"lr_schedule": "linear"}, {"mixed_precision": "fp8"}, {"steps": 0}, {"batch_size": 2.5},
                {"grad_accum": True}, {"lr": -1.0}, {"betas": [0.9]}, {"ema_decay": 1.5}):
        with pytest.raises(GenlabError):
            TrainConfig.from_dict(bad)
    with pytest.raises(GenlabError, match="fp16"):
        make_trainer("/nonexistent", make_config(mixed_precision="fp16"))


def test_bad_objective_output_and_tiny_dataset_are_errors(tmp_path):
    with pytest.raises(GenlabError, match="scalar tensor 'loss'"):
        make_trainer(tmp_path, make_config(steps=1), objective=lambda m, b, g: {"mse": m(b["pixel_values"]).mean()}).train()
    with pytest.raises(GenlabError, match="fewer than one global batch"):
        make_trainer(tmp_path, make_config(batch_size=65))
    with pytest.raises(GenlabError, match="no parameters with requires_grad"):
        make_trainer(tmp_path, make_config(), model=TinyNet().requires_grad_(False))


def test_grad_accumulation_counts_optimizer_steps(tmp_path):
    def run(out, batch_size, grad_accum):
        objective = DenoiseObjective(sigma=0.0)  # no noise, no dropout: both set-ups see the same function
        trainer = make_trainer(out, make_config(steps=3, batch_size=batch_size, grad_accum=grad_accum),
                               model=TinyNet(dropout=0.0), objective=objective)
        return trainer, trainer.train(), objective.calls

    accum, accum_summary, accum_calls = run(tmp_path / "accum", 4, 2)
    plain, plain_summary, plain_calls = run(tmp_path / "plain", 8, 1)
    assert (accum_calls, plain_calls) == (6, 3)
    # gradient of the mean loss, not the sum over micro-batches (AdamW alone would hide a wrong scale)
    accum_log, plain_log = read_log(tmp_path / "accum"), read_log(tmp_path / "plain")
    assert math.isclose(accum_log[0]["grad_norm"], plain_log[0]["grad_norm"], rel_tol=1e-5)
    assert accum_summary["step"] == 3 and [e["step"] for e in read_log(tmp_path / "accum")] == [1, 2, 3]
    assert accum.scheduler.last_epoch == 3 and accum.ema.optimization_step == 3
    assert steps_of(tmp_path / "accum") == [3]
    # two micro-batches of 4 = one batch of 8: same data, same mean loss, (nearly) same update
    assert math.isclose(accum_summary["losses"][0], plain_summary["losses"][0], rel_tol=1e-6)
    for a, b in zip(accum.unwrapped_model().parameters(), plain.unwrapped_model().parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bf16_mixed_precision_reaches_the_objective(tmp_path):
    from accelerate.state import AcceleratorState

    dtypes = []

    class Recording(DenoiseObjective):
        def forward(self, model, batch, generator):
            dtypes.append(model(batch["pixel_values"]).dtype)
            return super().forward(model, batch, generator)

    AcceleratorState._reset_state(reset_partial_state=True)  # precision is fixed per process by Accelerate
    try:
        trainer = make_trainer(tmp_path, make_config(steps=3, mixed_precision="bf16"), objective=Recording())
        summary = trainer.train()
        assert trainer.accelerator.mixed_precision == "bf16"
        assert dtypes == [torch.bfloat16] * 3
        assert all(math.isfinite(v) for v in summary["losses"])
        assert all(p.dtype == torch.float32 for p in trainer.unwrapped_model().parameters())
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_single_process_average(out):
    config = TrainConfig(steps=1, batch_size=8, lr=1e-2, grad_clip=1e9, log_every=1, checkpoint_every=1)
    trainer = Trainer(TinyNet(dropout=0.0), DenoiseObjective(sigma=0.0), DictDataset(), config, str(out))
    trainer.train()
    return {"log": read_log(out)[0],
            "params": torch.cat([p.detach().flatten() for p in trainer.unwrapped_model().parameters()]).tolist()}


@pytest.mark.slow
def test_two_process_ddp_on_cpu_resume_and_stop_signal(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # `accelerate launch --cpu --num_processes 2` starts a single process (huggingface/accelerate#2741), so
    # launch 2 workers through torchrun (--multi_gpu) and make Accelerate use CPU + gloo (ACCELERATE_USE_CPU).
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1",
           "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}  # HF_HOME: no accelerate config file
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), os.path.join(REPO, "tests", "ddp_train_script.py"), str(out)]
    t0 = time.time()
    result = subprocess.run(cmd, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.time() - t0 < 60

    ranks = [json.loads((out / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["pid"] != ranks[1]["pid"]
    # phase 1: DDP kept the replicas in sync; the logged loss is the mean over ranks, the same on both
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["losses"] == ranks[1]["losses"] == [e["loss"] for e in read_log(out)[:4]]
    # phase 2: resumed at 4 on both ranks; SIGTERM on rank 1 alone stopped both after step 6 with a checkpoint
    assert all(r["stopped"] and r["stop_step"] == 6 for r in ranks)
    assert ranks[0]["stop_params"] == ranks[1]["stop_params"] != ranks[0]["params"]
    assert steps_of(out) == [4, 6]
    assert [e["step"] for e in read_log(out)] == [1, 2, 3, 4, 5, 6]
    state = json.loads((out / "checkpoints" / "step-000006" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["num_processes"] == 2
    # phase 0: DDP averages the gradients: 2 x batch 4 equals one process on the 8 items concatenated
    single = make_single_process_average(tmp_path / "single")
    two = read_log(out / "average")[0]
    assert two["grad_norm"] == pytest.approx(single["log"]["grad_norm"], rel=1e-5)  # a sum would be 2x
    torch.testing.assert_close(torch.tensor(ranks[0]["average"]["params"]), torch.tensor(single["params"]),
                               atol=1e-6, rtol=0)
    model = TinyNet(seed=99)
    load_model(model, str(out / "checkpoints" / "step-000006" / "model.safetensors"))
    assert torch.cat([p.detach().flatten() for p in model.parameters()]).tolist() == ranks[0]["stop_params"]


@pytest.mark.slow
def test_same_recipe_and_seed_in_two_fresh_processes_gives_identical_tensors(tmp_path):
    """Model initialisation, data order and every draw derive from train.seed: two separate processes end with the
    same weights, EMA, optimizer state and log, bit for bit (a run killed before its first checkpoint therefore
    restarts from the same model)."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    args = ["train", "dit-digits", "--steps", "3", "--batch-size", "8", "--checkpoint-every", "3", "--seed", "5",
            "--set", "model.depth=1", "--set", "model.hidden_size=32", "--set", "model.num_heads=2"]
    for name in ("a", "b"):
        result = subprocess.run([sys.executable, "-m", "genlab.cli", *args, "--run-dir", str(tmp_path / name)],
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    ckpt = {n: tmp_path / n / "checkpoints" / "step-000003" for n in ("a", "b")}
    for file in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(ckpt["a"] / file), load_file(ckpt["b"] / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    opt_a = torch.load(ckpt["a"] / "optimizer.pt", weights_only=True)
    opt_b = torch.load(ckpt["b"] / "optimizer.pt", weights_only=True)
    for k, state in opt_a["state"].items():
        assert all(torch.equal(v, opt_b["state"][k][n]) for n, v in state.items() if torch.is_tensor(v))
    pipes = {n: load_file(tmp_path / n / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
             for n in ("a", "b")}
    assert all(torch.equal(pipes["a"][k], pipes["b"][k]) for k in pipes["a"])
    logs = [(tmp_path / n / "train_log.jsonl").read_text() for n in ("a", "b")]
    assert logs[0] == logs[1]


def test_an_interrupted_deletion_never_leaves_a_folder_that_looks_complete(tmp_path, monkeypatch):
    from genlab.training import checkpoint

    make_trainer(tmp_path, make_config(steps=6, checkpoint_every=2, keep_checkpoints=2)).train()
    root = tmp_path / "checkpoints"
    assert sorted(os.listdir(root)) == ["step-000004", "step-000006"]

    # A deletion killed after the rename: what is left is a .trash folder, never a step-N folder missing files.
    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.delete_checkpoint(str(root / "step-000004"))
    monkeypatch.undo()
    assert sorted(os.listdir(root)) == ["step-000004.trash", "step-000006"]
    # A step-N folder cut short some other way is not trusted by its name either.
    (root / "step-000006" / "optimizer.pt").unlink()
    assert list_checkpoints(str(root)) == []
    summary = make_trainer(tmp_path, make_config(steps=7, checkpoint_every=2)).train()
    assert summary["start_step"] == 0 and sorted(os.listdir(root)) == ["step-000006", "step-000007"]


def test_a_non_finite_loss_stops_the_run_before_the_update_without_a_checkpoint(tmp_path):
    class Exploding(DenoiseObjective):
        def forward(self, model, batch, generator):
            out = super().forward(model, batch, generator)
            if self.calls >= 3:  # the third step's loss is NaN
                out["loss"] = out["loss"] * float("nan")
            return out

    trainer = Trainer(TinyNet(), Exploding(), DictDataset(), make_config(steps=6, checkpoint_every=2), tmp_path)
    with pytest.raises(GenlabError, match="became nan at step 3") as info:
        trainer.train()
    assert "\n" not in str(info.value)
    assert steps_of(tmp_path) == [2]  # the checkpoint of step 2 survives; nothing was written for step 3
    assert all(torch.isfinite(p).all() for p in trainer.unwrapped_model().parameters())


@pytest.mark.parametrize("recipe", ["dit-digits", "ar-digits", "mar-digits", "kl-fashion"])
def test_every_objective_is_guarded_against_non_finite_losses(recipe, tmp_path, monkeypatch):
    """The guard lives in the trainer, so it holds for every objective a recipe builds."""
    from genlab import registry
    from genlab.training.builders import build_train_config
    from genlab.training.recipe import load_recipe

    overrides = ["train.steps=2", "train.batch_size=4", "data.name=digits"]
    if recipe == "kl-fashion":
        overrides.append("data.image_size=16")
    spec = load_recipe(recipe, overrides)
    builder = registry.recipe_kind(spec["kind"])(spec)
    real = builder.objective.forward
    monkeypatch.setattr(builder.objective, "forward",
                        lambda *a, **k: {**real(*a, **k), "loss": real(*a, **k)["loss"] * float("inf")})
    trainer = Trainer(builder.model, builder.objective, builder.dataset, build_train_config(spec["train"]), tmp_path)
    with pytest.raises(GenlabError, match="became inf at step 1"):
        trainer.train()
    assert steps_of(tmp_path) == []


def test_a_recipe_run_refuses_to_resume_from_another_starting_point(tmp_path):
    """A run folder's checkpoints belong to the model they started from: after the recipe's init: folder (here the
    tokenizer it builds on) changed, resuming would silently continue the old run; it is refused with one line."""
    from genlab.training.recipe import load_recipe, run_recipe

    quick = ["train.steps=2", "train.batch_size=4", "train.checkpoint_every=1"]
    for seed in (0, 1):  # two different tokenizers in the same folder
        run_recipe(load_recipe("vq-digits", quick + [f"train.seed={seed}"]), str(tmp_path / f"vq{seed}"),
                   str(tmp_path / f"run-vq{seed}"))
    ar = quick + [f"tokenizer.path={tmp_path / 'vq0'}", "model.hidden_size=32", "model.depth=1", "model.num_heads=2"]
    run_recipe(load_recipe("ar-digits", ar), str(tmp_path / "ar"), str(tmp_path / "run-ar"))
    again = run_recipe(load_recipe("ar-digits", ar), str(tmp_path / "ar2"), str(tmp_path / "run-ar"))
    assert again["start_step"] == 2  # the same starting point resumes
    other = [a.replace("vq0", "vq1") for a in ar]
    with pytest.raises(GenlabError, match="started from other weights"):
        run_recipe(load_recipe("ar-digits", other), str(tmp_path / "ar3"), str(tmp_path / "run-ar"))
