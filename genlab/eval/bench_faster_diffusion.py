"""`genlab bench faster-diffusion`: encoder propagation against the same UNet sampled plainly, in one run.

For each UNet pipeline folder, at batch 1 and the throughput batch: wall-clock of the plain sampler and of
propagation with the `50ls` key steps (sequential and parallel), timed round-robin after a warm-up (median and
spread), with the FLOP ceiling (plain FLOPs / propagated FLOPs, torch.utils.flop_counter) beside the measured ratio.
Quality on the same seeds and noise: class accuracy (and colour accuracy for prompts) and Fréchet distance of the
plain and the propagated samples, and the key-step choices at one K — `50ls`, uniform and `statdp` (the statistical
DP on a template run of the encoder features) — by their deviation from the plain samples on the same noise.
"""

from __future__ import annotations

from ..errors import GenlabError, check_positive_int
from .harness import (OUT, REPEATS, THREADS, Bench, BenchArgument, BenchSummary, check_seed, check_seeds,
                      count_flops, over_seeds, ratio, time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, write_report

MODES = {"plain": {}, "50ls sequential": {"key_steps": "50ls", "parallel": False},
         "50ls parallel": {"key_steps": "50ls", "parallel": True}}
STEPS = 50  # the step count the 50ls preset is defined for (DDIM-50, the paper's setting)


def _conditioning(pipe, batch: int, dataset: str) -> dict:
    from .runner import evaluation_inputs

    inputs, _, _ = evaluation_inputs(pipe, dataset, batch)
    return inputs


def _quality(pipe, dataset, num_samples, guidance, seeds, classifier, reals, key_steps, plain=None) -> dict:
    """Accuracy / colour accuracy / FD over seeds for one key-step choice; with `plain` (seed -> images) also the
    mean absolute deviation from the plain samples drawn from the same noise."""
    from .runner import evaluation_inputs, generate, score_samples

    inputs, labels, attributes = evaluation_inputs(pipe, dataset, num_samples)
    images = {}
    names = {"class_accuracy": "accuracy", "frechet_distance": "fd"}  # the other scores keep their names

    def measure(seed):
        extra = {} if key_steps is None else {"key_steps": key_steps, "parallel": True}
        fakes = generate(pipe, inputs, STEPS, guidance, seed, 100, **extra)
        images[seed] = fakes
        out = {names.get(k, k): v for k, v in score_samples(fakes, labels, attributes, classifier, reals).items()}
        if plain is not None:
            out["deviation"] = float((fakes - plain[seed]).abs().mean())
        return out

    q = over_seeds(measure, seeds)
    return {"stats": q, "images": images}


def bench_faster_diffusion(pipelines=("pipelines/unet-digits",), batch_size: int = 8, repeats: int = 3,
                           num_samples: int = 200, seeds=(0, 1, 2), seed: int = 0, num_key_steps: int = 9,
                           template_samples: int = 16, threads: int = 2, out: str | None = "bench/faster_diffusion.md"
                           ) -> dict:
    """Benchmark encoder propagation on UNet pipelines; see the module doc."""
    import torch

    from ..acceleration.encoder_propagation import statdp_key_steps
    from ..acceleration.key_steps import resolve_key_steps
    from ..pipelines.loading import sampling_defaults, training_info
    from . import load_classifier, real_reference

    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    num_key_steps = check_positive_int(num_key_steps, "num_key_steps")
    template_samples = check_positive_int(template_samples, "template_samples")
    if num_key_steps > STEPS:
        raise GenlabError(f"num_key_steps={num_key_steps} is more than the {STEPS} sampling steps")
    check_seed(seed)
    seeds = check_seeds(seeds)
    pipelines = [pipelines] if isinstance(pipelines, str) else list(pipelines)
    if not pipelines:
        raise GenlabError("give at least one UNet pipeline folder")
    arguments = dict(pipelines=pipelines, batch_size=batch_size, repeats=repeats, num_samples=num_samples,
                     seeds=seeds, seed=seed, num_key_steps=num_key_steps, template_samples=template_samples,
                     threads=threads, out=out)
    # uniform at (about) the same K: every m-th step with ceil(STEPS / m) = K where such an m exists
    m = next((m for m in range(1, STEPS + 1) if -(-STEPS // m) <= num_key_steps), STEPS)
    rows = []
    with torch_threads(threads):
        for path in pipelines:
            pipe = load_expected(path, ("UNetPipeline", "UNetVideoPipeline"), "--pipelines")
            pipe.set_progress_bar_config(disable=True)
            dataset = training_info(path).get("dataset")
            if dataset is None:
                raise GenlabError(f"{path} has no training_info.json naming its data set")
            _, guidance, _ = sampling_defaults(path)

            speed = []
            for batch in sorted({1, batch_size}):
                inputs = _conditioning(pipe, batch, dataset)

                def call(mode, inputs=inputs):
                    return lambda: pipe(**inputs, num_inference_steps=STEPS, guidance_scale=guidance,
                                        generator=torch.Generator().manual_seed(seed), output_type="pt",
                                        **MODES[mode])
                calls = {mode: call(mode) for mode in MODES}
                _, timing = time_round_robin(calls, repeats)
                flops = {mode: count_flops(calls[mode])[0] for mode in MODES}
                speed.append({"batch_size": batch, "seconds": {k: t.median for k, t in timing.items()},
                              "spread": {k: t.spread for k, t in timing.items()},
                              "speedup": {k: ratio(timing["plain"], t) for k, t in timing.items()},
                              "flop_ceiling": {k: flops["plain"] / flops[k] for k in MODES}, "flops": flops})

            classifier = load_classifier(dataset)
            reals = real_reference(dataset, "test")
            template = _conditioning(pipe, template_samples, dataset)
            statdp = statdp_key_steps(pipe, num_key_steps, **template, num_inference_steps=STEPS,
                                      guidance_scale=guidance, generator=torch.Generator().manual_seed(10_000),
                                      output_type="pt")
            # [0]: the encoder once, then decoder-only steps; the spec's check that too few key steps hurt
            choices = {"plain": None, "50ls": "50ls", f"uniform:{m}": f"uniform:{m}", "statdp": statdp, "[0]": [0]}
            quality, plain_images = {}, None
            for name, key_steps in choices.items():
                q = _quality(pipe, dataset, num_samples, guidance, seeds, classifier, reals, key_steps, plain_images)
                if name == "plain":
                    plain_images = q["images"]
                keys = resolve_key_steps(key_steps, STEPS) if key_steps is not None else list(range(STEPS))
                quality[name] = {"key_steps": keys, **{f"{k}_{s}": v[s] for k, v in q["stats"].items()
                                                      for s in ("mean", "std")}}
            rows.append({"pipeline": path, "class": type(pipe).__name__, "unet": type(pipe.unet).__name__,
                         "dataset": dataset, "guidance": guidance, "speed": speed, "quality": quality})

    first = rows[0]
    big = first["speed"][-1]
    command = BENCH.command(arguments)
    result = {"bench": "faster-diffusion", "command": command, "arguments": arguments,
              "machine": machine_info(threads), "rows": rows}
    plain_q, fast_q = first["quality"]["plain"], first["quality"]["50ls"]
    result["summary"] = BenchSummary(
        method="Faster Diffusion (encoder propagation, 50ls, parallel)", baseline="the same UNet, plain DDIM-50",
        dataset=first["dataset"], speed_ratio=big["speedup"]["50ls parallel"],
        method_quality={"class_accuracy": fast_q["accuracy_mean"], "frechet_distance": fast_q["fd_mean"]},
        baseline_quality={"class_accuracy": plain_q["accuracy_mean"], "frechet_distance": plain_q["fd_mean"]},
        command=command, trick_speed_ratio=big["speedup"]["50ls parallel"]).to_dict()
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    lines = ["# Faster Diffusion bench: encoder propagation vs the plain sampler", "", f"Command: `{r['command']}`",
             "", machine_line(r["machine"]), "",
             (f"DDIM-{STEPS} with CFG (one doubled batch per step). Speed: median (min-max) of the timed calls after a "
              "warm-up, the modes timed round-robin; the FLOP ceiling is plain FLOPs / the mode's FLOPs "
              "(torch.utils.flop_counter). Quality: the same seeds and noise for every choice of key steps; "
              "deviation = mean |x - x_plain| of the images in [-1, 1].")]
    for row in r["rows"]:
        lines += ["", f"## `{row['pipeline']}` ({row['unet']}, {row['dataset']}, guidance {row['guidance']})", "",
                  "| batch | mode | s / call (min-max) | speed-up | FLOP ceiling |", "|---|---|---|---|---|"]
        for s in row["speed"]:
            for mode in MODES:
                lo, hi = s["spread"][mode]
                lines.append(f"| {s['batch_size']} | {mode} | {s['seconds'][mode]:.3f} ({lo:.3f}-{hi:.3f}) | "
                             f"{s['speedup'][mode]:.2f}× | {s['flop_ceiling'][mode]:.2f}× |")
        video = any("direction_accuracy_mean" in q for q in row["quality"].values())
        extra = " direction accuracy | motion consistency |" if video else ""
        lines += ["", "| key steps | K | class accuracy | colour accuracy |" + extra + " Fréchet distance | "
                  "deviation from plain |", "|---|---|---|---|" + "---|" * (2 * video) + "---|---|"]

        def percent(q, key):
            return f"{100 * q[key + '_mean']:.1f} ± {100 * q[key + '_std']:.1f} %" if key + "_mean" in q else "–"
        for name, q in row["quality"].items():
            deviation = f"{q['deviation_mean']:.4f}" if "deviation_mean" in q else "0"
            motion = (f" {percent(q, 'direction_accuracy')} | {percent(q, 'motion_consistency')} |" if video else "")
            lines.append(f"| {name} | {len(q['key_steps'])} | {percent(q, 'accuracy')} | "
                         f"{percent(q, 'color_accuracy')} |{motion} {q['fd_mean']:.2f} ± {q['fd_std']:.2f} | "
                         f"{deviation} |")
        lines.append("")
        lines.append(f"statdp key steps: {row['quality']['statdp']['key_steps']}")
    lines.append("")
    return "\n".join(lines)


BENCH = Bench(
    "faster-diffusion", bench_faster_diffusion,
    "Encoder propagation vs the plain sampler on UNet pipelines: wall-clock (sequential and parallel) at batch 1 "
    "and the throughput batch with the FLOP ceiling, quality on the same seeds, and 50ls vs uniform vs statdp key "
    "steps at one K.",
    arguments=(
        BenchArgument("--pipelines", "pipelines", "UNet pipeline folders", str, "+"),
        BenchArgument("--batch-size", "batch_size", "the throughput batch (batch 1 is always timed too)", int),
        REPEATS,
        BenchArgument("--num-samples", "num_samples", "samples per quality seed", int),
        BenchArgument("--seeds", "seeds", "sampling seeds of the quality runs", int, "+"),
        BenchArgument("--seed", "seed", "seed of the timed calls", int),
        BenchArgument("--num-key-steps", "num_key_steps", "K of the statdp and uniform key steps", int),
        BenchArgument("--template-samples", "template_samples", "samples of statdp's template run", int),
        THREADS,
        OUT,
    ),
)
