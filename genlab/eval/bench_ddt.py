"""`genlab bench ddt`: DDT's encoder sharing and DDT vs DiT, measured in one run on the same seeds.

Sharing policies none / uniform(r) / statdp(K = ceil(N / r), the same encoder budget), and statdp with the re-timed
z (`retime_shared=True`), timed round-robin on one batch with CFG on, and at batch 1 (the latency a user waiting for
one image sees); the layer-count model (E + D) / (E K / N + D) next to the measured speed-up; the deviation of shared
samples from the unshared ones on the same noise and the speckle they leave in the background; the classifier
accuracy and Fréchet distance of every policy; DDT vs the equal-size DiT at equal training steps.
"""

from __future__ import annotations

import math
import time

from ..errors import GenlabError, check_number, check_positive_int
from .harness import (OUT, REPEATS, THREADS, Bench, BenchArgument, BenchSummary, check_seed, ratio,
                      time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, write_report


def _policy_args(policy: tuple) -> dict:
    kind, rate, retime = policy
    if kind == "none":
        return {}
    return {"sharing": kind, "refresh_rate": rate, **({"retime_shared": True} if retime else {})}


def _policy_name(policy: tuple) -> str:
    kind, rate, retime = policy
    return "none" if kind == "none" else f"{kind}(r={rate})" + (" re-timed" if retime else "")


def _check_rates(rates) -> list[int]:
    try:
        rates = list(rates)
    except TypeError:
        raise GenlabError(f"rates must be a list of integers >= 2, got {rates!r}") from None
    out = []
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, int) and not (isinstance(r, float) and r.is_integer()):
            raise GenlabError(f"each rate is a refresh rate r, an integer >= 2 (encoder every r-th step), got {r!r}")
        if int(r) < 2:
            raise GenlabError(f"each rate must be >= 2 (r = 1 is no sharing, always measured as 'none'), got {r}")
        if int(r) not in out:
            out.append(int(r))
    if not out:
        raise GenlabError("give at least one sharing rate")
    return out


def bench_ddt(ddt_path: str = "pipelines/ddt-fashion", dit_path: str = "pipelines/dit-fashion", steps: int = 40,
              batch_size: int = 8, guidance: float = 3.0, rates=(2, 4, 5), repeats: int = 3, num_samples: int = 200,
              seed: int = 0, threads: int = 2, out: str | None = "bench/ddt.md", guidance_interval=None) -> dict:
    """Benchmark DDT's encoder sharing (speed and quality on the same seeds) and DDT vs DiT; see the module doc.

    Timing: median of `repeats` calls of one pipeline call on `batch_size` labels (0, 1, ..) with CFG on, after one
    warm-up call per policy, and the same at batch 1; the policies (and the DiT) are timed round-robin so that load
    drifts hit all alike. The statdp schedules are solved before timing (template run + DP; their one-off cost is
    reported apart). Quality: `num_samples` class-balanced samples per policy from the same seeded generator (same
    noise), the mean squared deviation of the final images (in [-1, 1]) from the no-sharing images, and the shipped
    classifier's accuracy and Fréchet distance against the real test split."""
    import torch

    from ..modeling import count_parameters
    from ..pipelines.loading import training_info
    from . import background_speckle, class_accuracy, frechet_distance, load_classifier, real_reference
    from .runner import generate_balanced

    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_seed(seed)
    guidance = check_number(guidance, "guidance")
    if guidance <= 1.0:
        raise GenlabError(f"guidance must be > 1 (the bench times sampling with CFG on), got {guidance}")
    rates = _check_rates(rates)
    interval = None if guidance_interval is None else tuple(float(v) for v in guidance_interval)
    if interval is not None and len(interval) != 2:
        raise GenlabError(f"guidance_interval must be (lo, hi), got {guidance_interval!r}")
    arguments = dict(ddt_path=ddt_path, dit_path=dit_path, steps=steps, batch_size=batch_size, guidance=guidance,
                     rates=rates, repeats=repeats, num_samples=num_samples, seed=seed, threads=threads, out=out,
                     guidance_interval=interval)

    with torch_threads(threads):
        ddt = load_expected(ddt_path, "DDTPipeline", "--ddt")
        dit = load_expected(dit_path, "FlowDiTPipeline", "--dit")
        ddt_info, dit_info = training_info(ddt_path), training_info(dit_path)
        dataset = ddt_info.get("dataset") or dit_info.get("dataset")
        if dataset is None:
            raise GenlabError(f"neither {ddt_path} nor {dit_path} has a training_info.json naming its data set")
        if dit_info.get("dataset") not in (None, dataset):
            raise GenlabError(f"{ddt_path} was trained on {dataset} but {dit_path} on {dit_info['dataset']}")
        num_classes = ddt.transformer.config.num_classes
        if dit.transformer.config.num_classes != num_classes:
            raise GenlabError(f"{ddt_path} has {num_classes} classes but {dit_path} "
                              f"{dit.transformer.config.num_classes}")
        classifier = load_classifier(dataset)

        cfg = ddt.transformer.config
        n_eval = ddt.scheduler.model_evaluations(steps)
        enc, dec = int(cfg.num_encoder_layers), int(cfg.num_decoder_layers)
        # The official policies, and statdp with genlab's re-timed z (same key steps and encoder calls).
        policies = [("none", None, False)] + [(kind, r, retime) for r in rates
                                              for kind, retime in (("uniform", False), ("statdp", False),
                                                                   ("statdp", True))]
        call = {"num_inference_steps": steps, "guidance_scale": guidance, "guidance_interval": interval,
                "output_type": "pt"}

        # ---- statdp schedules: template run + DP, before (and outside) the timing
        guidance_schedule = ddt.guidance_schedule(guidance, interval)
        start = time.perf_counter()
        ddt.sharing_similarity(steps, guidance, interval, refresh=True)
        template_seconds = time.perf_counter() - start
        schedules = {}
        for r in rates:
            k = math.ceil(n_eval / r)
            saved = ddt.find_sharing_schedule(steps, k, guidance_schedule) is not None
            start = time.perf_counter()
            policy = ddt.sharing_policy("statdp", r, None, n_eval)
            key_steps = ddt.key_steps(policy, steps, guidance_schedule)
            schedules[r] = {"K": k, "key_steps": key_steps, "source": "saved" if saved else "solved",
                            "dp_seconds": time.perf_counter() - start}

        # ---- timing: the batch, then batch 1; warm-up, then round-robin repeats
        def calls(labels):
            runners = {_policy_name(p): (ddt, _policy_args(p)) for p in policies}
            runners["dit"] = (dit, {})

            def run(pipe, extra):
                def fn():
                    pipe(class_labels=labels, generator=torch.Generator().manual_seed(seed), **call, **extra)
                    return dict(pipe.sharing_stats) if pipe is ddt else None
                return fn
            return {name: run(pipe, extra) for name, (pipe, extra) in runners.items()}

        stats, timings = time_round_robin(calls([i % num_classes for i in range(batch_size)]), repeats)
        _, latency = time_round_robin(calls([0]), repeats)
        seconds = {name: t.median for name, t in timings.items()}

        # ---- quality on the same seeds
        gen_batch = max(batch_size, 100)
        extra_call = {"guidance_interval": interval}
        images, acc = {}, {}
        for p in policies:
            name = _policy_name(p)
            images[name], sample_labels = generate_balanced(ddt, num_classes, num_samples, steps, guidance, seed,
                                                            gen_batch, **extra_call, **_policy_args(p))
            acc[name] = class_accuracy(images[name], sample_labels, classifier)
        dit_images, _ = generate_balanced(dit, num_classes, num_samples, steps, guidance, seed, gen_batch,
                                          **extra_call)
        reference = images["none"]
        deviation = {name: float(((im - reference) ** 2).mean()) for name, im in images.items()}
        speckle = {name: background_speckle(im, reference) for name, im in images.items()}
        reals = real_reference(dataset, "test")
        real_speckle = background_speckle(reals)
        fd = {name: frechet_distance(reals, im, classifier) for name, im in images.items()}

        rows = []
        for p in policies:
            name = _policy_name(p)
            k = stats[name]["encoder_calls"]
            rows.append({
                "policy": name, "kind": p[0], "rate": p[1], "retime": p[2],
                "share_ratio": 0.0 if p[1] is None else 1 - 1 / p[1],
                "encoder_calls": k, "decoder_calls": stats[name]["decoder_calls"],
                "key_steps": stats[name]["key_steps"], "seconds": seconds[name],
                "seconds_spread": timings[name].spread, "speedup": ratio(timings["none"], timings[name]),
                "latency_seconds": latency[name].median,
                "latency_speedup": ratio(latency["none"], latency[name]),
                "model_speedup": (enc + dec) / (enc * k / n_eval + dec),
                "deviation": deviation[name], "background_speckle": speckle[name],
                "class_accuracy": acc[name], "frechet_distance": fd[name],
            })

        dit_labels = torch.arange(num_samples) % num_classes
        comparison = {}
        for name, path, info, pipe, ims, key in [("DDT", ddt_path, ddt_info, ddt, images["none"], "none"),
                                                 ("DiT", dit_path, dit_info, dit, dit_images, "dit")]:
            comparison[name] = {
                "pipeline": path, "training_steps": info.get("steps"), "parameters": count_parameters(pipe.transformer),
                "class_accuracy": class_accuracy(ims, dit_labels, classifier),
                "frechet_distance": frechet_distance(reals, ims, classifier), "seconds_per_batch": seconds[key],
                "latency_seconds": latency[key].median,
            }
        comparison["ddt_over_dit_time"] = seconds["none"] / seconds["dit"]

    command = BENCH.command(arguments)
    result = {
        "bench": "ddt", "command": command, "arguments": arguments, "machine": machine_info(threads),
        "dataset": dataset, "steps": steps, "model_evaluations": n_eval, "batch_size": batch_size,
        "guidance": guidance, "guidance_interval": interval, "repeats": repeats, "num_samples": num_samples,
        "seed": seed, "encoder_layers": enc, "decoder_layers": dec, "template_seconds": template_seconds,
        "schedules": schedules, "policies": rows, "real_background_speckle": real_speckle, "times": {n: t.seconds for n, t in timings.items()},
        "latency_times": {n: t.seconds for n, t in latency.items()}, "ddt_vs_dit": comparison,
        "timed_calls": {name: {**call, **({} if name == "dit" else _policy_args(p)), "seed": seed,
                               "batch_size": batch_size} for name, p in [*[(_policy_name(p), p) for p in policies],
                                                                          ("dit", ("none", None, False))]},
    }
    r = 4 if 4 in rates else rates[-1]
    row = next(p for p in rows if p["policy"] == f"statdp(r={r})")
    result["summary"] = BenchSummary(
        method=f"DDT, statdp sharing r={r} ({row['encoder_calls']}/{n_eval} encoder calls)",
        baseline="DiT (same size and training steps)", dataset=dataset,
        speed_ratio=ratio(timings["dit"], timings[row["policy"]]), trick_speed_ratio=row["speedup"],
        method_quality={"class_accuracy": row["class_accuracy"], "frechet_distance": row["frechet_distance"]},
        baseline_quality={"class_accuracy": comparison["DiT"]["class_accuracy"],
                          "frechet_distance": comparison["DiT"]["frechet_distance"]},
        command=command).to_dict()
    result["markdown"] = _ddt_markdown(result)
    write_report(out, result["markdown"])
    return result


def _ddt_markdown(r: dict) -> str:
    m = r["machine"]
    interval = "none (guided at every step)" if r["guidance_interval"] is None else \
        f"({r['guidance_interval'][0]:g}, {r['guidance_interval'][1]:g})"
    lines = [
        "# DDT bench: encoder sharing and DDT vs DiT", "",
        f"Command: `{r['command']}`", "",
        machine_line(m), "",
        (f"Settings: data set {r['dataset']}, N = {r['model_evaluations']} model evaluations ({r['steps']} steps), "
        f"CFG {r['guidance']:g} (interval {interval}), timing batch {r['batch_size']} labels (CFG doubles it), "
        f"median of {r['repeats']} timed calls after one warm-up (spread: min-max), policies timed round-robin, and "
        f"the same at batch 1 (latency); quality over "
        f"{r['num_samples']} class-balanced samples, seed {r['seed']}, same noise for every policy. "
        f"Encoder / decoder blocks E = {r['encoder_layers']}, D = {r['decoder_layers']}."), "",
        "## Encoder sharing", "",
        ("| policy | share ratio | encoder calls K | decoder calls | s / batch (min-max) | speed-up (measured) | "
        "batch-1 s | batch-1 speed-up | layer model (E+D)/(E·K/N+D) | MSD vs none | background speckle ×10⁻³ | "
        "class accuracy | Fréchet distance |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["policies"]:
        lo, hi = p["seconds_spread"]
        lines.append(f"| {p['policy']} | {p['share_ratio']:.2f} | {p['encoder_calls']} | {p['decoder_calls']} | "
                     f"{p['seconds']:.3f} ({lo:.3f}-{hi:.3f}) | {p['speedup']:.2f}× | {p['latency_seconds']:.3f} | "
                     f"{p['latency_speedup']:.2f}× | {p['model_speedup']:.2f}× | "
                     f"{p['deviation']:.3g} | {1000 * p['background_speckle']:.2f} | "
                     f"{100 * p['class_accuracy']:.1f} % | {p['frechet_distance']:.2f} |")
    lines += ["", ("MSD = mean squared deviation of the final images (in [-1, 1]) from the no-sharing images on the "
              "same noise and labels. Background speckle = `genlab.eval.background_speckle`: mean |x − 3×3 box mean| "
              "over the pixels whose 5×5 neighbourhood is black in the no-sharing image on the same noise (residual "
              f"noise in an empty background); the real test images score {1000 * r['real_background_speckle']:.2f} "
              "on their own background. Re-timed = `retime_shared=True`: the reused steps rebuild z from the kept "
              "encoder state with their own t (genlab's option; the official sampler reuses z with the key step's "
              "t); same key steps and encoder calls as the official statdp row above it."), "",
              (f"Statdp schedules: one-off template run (8 samples, full recompute) {r['template_seconds']:.3f} s, "
              "not included in the timings above."), "",
              "| r | K | source | DP solve s | key steps |", "|---|---|---|---|---|"]
    for rate, s in r["schedules"].items():
        lines.append(f"| {rate} | {s['K']} | {s['source']} | {s['dp_seconds']:.4f} | "
                     f"{', '.join(map(str, s['key_steps']))} |")
    c = r["ddt_vs_dit"]
    lines += ["", "## DDT vs DiT (no sharing, same steps, guidance and seeds)", "",
              "| model | pipeline | training steps | parameters | class accuracy | Fréchet distance | s / batch | "
              "batch-1 s |", "|---|---|---|---|---|---|---|---|"]
    for name in ("DDT", "DiT"):
        x = c[name]
        lines.append(f"| {name} | `{x['pipeline']}` | {x['training_steps'] if x['training_steps'] is not None else '?'}"
                     f" | {x['parameters']:,} | {100 * x['class_accuracy']:.1f} % | {x['frechet_distance']:.3f} | "
                     f"{x['seconds_per_batch']:.3f} | {x['latency_seconds']:.3f} |")
    if c["DDT"]["training_steps"] != c["DiT"]["training_steps"]:
        lines += ["", "**Note: the two pipelines were not trained for the same number of steps.**"]
    lines += ["", (f"DDT (no sharing) / DiT sampling time: {c['ddt_over_dit_time']:.2f}×. Fréchet distance is genlab's "
              "classifier Fréchet distance against the real test split (comparable within genlab only)."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "ddt", bench_ddt,
    "DDT encoder sharing (none / uniform(r) / statdp with the same encoder budget, official and re-timed) timed on "
    "one batch with CFG and at batch 1, deviation from unshared samples, background speckle, accuracy and Fréchet "
    "distance, plus DDT vs the equal-size DiT.",
    arguments=(
        BenchArgument("--ddt", "ddt_path", "DDT pipeline folder"),
        BenchArgument("--dit", "dit_path", "DiT pipeline folder (the baseline)"),
        BenchArgument("--steps", "steps", "inference steps N", int),
        BenchArgument("--batch-size", "batch_size", "labels in the timed batch, CFG doubles it", int),
        BenchArgument("--guidance", "guidance", "CFG scale, > 1", float),
        BenchArgument("--guidance-interval", "guidance_interval", "guide only for LO < t < HI (t = 0 noise)",
                      float, 2, ("LO", "HI")),
        BenchArgument("--rates", "rates", "encoder refresh rates r >= 2 (encoder every r-th step; share ratio "
                      "1 - 1/r)", int, "+"),
        REPEATS,
        BenchArgument("--num-samples", "num_samples", "class-balanced samples for the quality metrics", int),
        BenchArgument("--seed", "seed", "seed of the noise, the same for every policy", int),
        THREADS,
        OUT,
    ),
)
