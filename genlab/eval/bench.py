"""`genlab bench`: measured speed/quality benchmarks of the methods, one run, same seeds, one markdown report each.

`BENCHES` maps a bench name to its function; every bench takes keyword arguments with defaults, writes a markdown
report to `out` and returns its numbers as a dict (the markdown under "markdown"). `run_bench("all")` runs them all.

`bench_ddt` (DDT spec §4 cost model, §10 items 12, 13 and 15): DDT's encoder sharing (none / uniform(r) /
statdp(K = ceil(N / r), the same encoder budget)) timed in one run on one batch with CFG on, the layer-count model
(E + D) / (E K / N + D) next to the measured speed-up, the deviation of shared samples from the unshared ones on the
same noise, the classifier accuracy of every policy, and DDT vs the equal-size DiT at equal training steps.
"""

from __future__ import annotations

import inspect
import os
import math
import statistics
import time

import torch

from ..errors import GenlabError, check_positive_int
from .bench_utils import check_seed, count_parameters, load_expected, machine_info, machine_line, write_report


def _policy_args(policy: tuple) -> dict:
    kind, rate = policy
    return {} if kind == "none" else {"sharing": kind, "sharing_ratio": rate}


def _policy_name(policy: tuple) -> str:
    kind, rate = policy
    return "none" if kind == "none" else f"{kind}(r={rate})"


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


def _fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"


def bench_ddt(ddt_path: str = "pipelines/ddt-fashion", dit_path: str = "pipelines/dit-fashion", steps: int = 40,
              batch_size: int = 8, guidance: float = 3.0, rates=(2, 4, 5), repeats: int = 3, num_samples: int = 200,
              seed: int = 0, threads: int = 2, out: str | None = "bench/ddt.md", guidance_interval=None,
              print_report: bool = False) -> dict:
    """Benchmark DDT's encoder sharing (speed and quality on the same seeds) and DDT vs DiT; see the module doc.

    Timing: median of `repeats` calls of one pipeline call on `batch_size` labels (0, 1, ..) with CFG on, after one
    warm-up call per policy; the policies (and the DiT) are timed round-robin so that load drifts hit all alike.
    The statdp schedules are solved before timing (template run + DP; their one-off cost is reported apart).
    Quality: `num_samples` class-balanced samples per policy from the same seeded generator (same noise), the mean
    squared deviation of the final images (in [-1, 1]) from the no-sharing images, and the shipped classifier's
    accuracy. DDT vs DiT: accuracy and classifier Fréchet distance against the real test split."""
    from ..pipelines.loading import training_info
    from . import class_accuracy, frechet_distance, load_classifier, real_reference
    from .runner import generate_balanced

    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    threads = check_positive_int(threads, "threads")
    check_seed(seed)
    try:
        guidance = float(guidance)
    except (TypeError, ValueError):
        raise GenlabError(f"guidance must be a number, got {guidance!r}") from None
    if not math.isfinite(guidance) or guidance <= 1.0:
        raise GenlabError(f"guidance must be > 1 (the bench times sampling with CFG on), got {guidance}")
    rates = _check_rates(rates)
    interval = None if guidance_interval is None else tuple(float(v) for v in guidance_interval)
    if interval is not None and len(interval) != 2:
        raise GenlabError(f"guidance_interval must be (lo, hi), got {guidance_interval!r}")

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
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
        policies = [("none", None)] + [(kind, r) for r in rates for kind in ("uniform", "statdp")]
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

        # ---- timing: warm-up, then round-robin repeats
        labels = [i % num_classes for i in range(batch_size)]
        runners = {_policy_name(p): (ddt, _policy_args(p)) for p in policies}
        runners["dit"] = (dit, {})
        stats = {}
        for name, (pipe, extra) in runners.items():  # warm-up (also records the call counts)
            pipe(class_labels=labels, generator=torch.Generator().manual_seed(seed), **call, **extra)
            if pipe is ddt:
                stats[name] = dict(ddt.sharing_stats)
        times = {name: [] for name in runners}
        for _ in range(repeats):
            for name, (pipe, extra) in runners.items():
                generator = torch.Generator().manual_seed(seed)
                start = time.perf_counter()
                pipe(class_labels=labels, generator=generator, **call, **extra)
                times[name].append(time.perf_counter() - start)
        seconds = {name: statistics.median(ts) for name, ts in times.items()}

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
        reals = real_reference(dataset, "test")
        fd = {name: frechet_distance(reals, im, classifier) for name, im in images.items()}

        rows = []
        for p in policies:
            name = _policy_name(p)
            k = stats[name]["encoder_calls"]
            rows.append({
                "policy": name, "kind": p[0], "rate": p[1], "share_ratio": 0.0 if p[1] is None else 1 - 1 / p[1],
                "encoder_calls": k, "decoder_calls": stats[name]["decoder_calls"],
                "key_steps": stats[name]["key_steps"], "seconds": seconds[name],
                "speedup": seconds["none"] / seconds[name], "model_speedup": (enc + dec) / (enc * k / n_eval + dec),
                "deviation": deviation[name], "class_accuracy": acc[name], "frechet_distance": fd[name],
            })

        dit_labels = torch.arange(num_samples) % num_classes
        comparison = {}
        for name, path, info, pipe, ims, secs in [
                ("DDT", ddt_path, ddt_info, ddt, images["none"], seconds["none"]),
                ("DiT", dit_path, dit_info, dit, dit_images, seconds["dit"])]:
            comparison[name] = {
                "pipeline": path, "training_steps": info.get("steps"), "parameters": count_parameters(pipe.transformer),
                "class_accuracy": class_accuracy(ims, dit_labels, classifier),
                "frechet_distance": frechet_distance(reals, ims, classifier), "seconds_per_batch": secs,
            }
        comparison["ddt_over_dit_time"] = seconds["none"] / seconds["dit"]
    finally:
        torch.set_num_threads(old_threads)

    command = (f"genlab bench ddt --ddt {ddt_path} --dit {dit_path} --steps {steps} --batch-size {batch_size} "
               f"--guidance {guidance:g} --rates {' '.join(map(str, rates))} --repeats {repeats} "
               f"--num-samples {num_samples} --seed {seed} --threads {threads}"
               + (f" --guidance-interval {interval[0]:g} {interval[1]:g}" if interval else "")
               + (f" --out {out}" if out else ""))
    machine = machine_info(threads)
    result = {
        "bench": "ddt", "command": command, "machine": machine, "dataset": dataset, "steps": steps,
        "model_evaluations": n_eval, "batch_size": batch_size, "guidance": guidance, "guidance_interval": interval,
        "repeats": repeats, "num_samples": num_samples, "seed": seed, "encoder_layers": enc, "decoder_layers": dec,
        "template_seconds": template_seconds, "schedules": schedules, "policies": rows, "times": times,
        "ddt_vs_dit": comparison,
    }
    r = 4 if 4 in rates else rates[-1]
    row = next(p for p in rows if p["policy"] == f"statdp(r={r})")
    result["summary"] = {
        "method": f"DDT, statdp sharing r={r} ({row['encoder_calls']}/{n_eval} encoder calls)",
        "baseline": "DiT (same size and training steps)", "dataset": dataset,
        "speed_ratio": seconds["dit"] / seconds[row["policy"]], "trick_speed_ratio": row["speedup"],
        "method_quality": {"class_accuracy": row["class_accuracy"], "frechet_distance": row["frechet_distance"]},
        "baseline_quality": {"class_accuracy": comparison["DiT"]["class_accuracy"],
                             "frechet_distance": comparison["DiT"]["frechet_distance"]},
        "command": command}
    result["markdown"] = _ddt_markdown(result)
    write_report(out, result["markdown"])
    if print_report:
        print(result["markdown"])
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
        f"median of {r['repeats']} timed calls after one warm-up, policies timed round-robin; quality over "
        f"{r['num_samples']} class-balanced samples, seed {r['seed']}, same noise for every policy. "
        f"Encoder / decoder blocks E = {r['encoder_layers']}, D = {r['decoder_layers']}."), "",
        "## Encoder sharing", "",
        ("| policy | share ratio | encoder calls K | decoder calls | s / batch | speed-up (measured) | "
        "layer model (E+D)/(E·K/N+D) | MSD vs none | class accuracy | Fréchet distance |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["policies"]:
        lines.append(f"| {p['policy']} | {p['share_ratio']:.2f} | {p['encoder_calls']} | {p['decoder_calls']} | "
                     f"{p['seconds']:.3f} | {p['speedup']:.2f}× | {p['model_speedup']:.2f}× | "
                     f"{p['deviation']:.3g} | {100 * p['class_accuracy']:.1f} % | {p['frechet_distance']:.2f} |")
    lines += ["", ("MSD = mean squared deviation of the final images (in [-1, 1]) from the no-sharing images on the "
              "same noise and labels."), "",
              (f"Statdp schedules: one-off template run (8 samples, full recompute) {r['template_seconds']:.3f} s, "
              "not included in the timings above."), "",
              "| r | K | source | DP solve s | key steps |", "|---|---|---|---|---|"]
    for rate, s in r["schedules"].items():
        lines.append(f"| {rate} | {s['K']} | {s['source']} | {s['dp_seconds']:.4f} | "
                     f"{', '.join(map(str, s['key_steps']))} |")
    c = r["ddt_vs_dit"]
    lines += ["", "## DDT vs DiT (no sharing, same steps, guidance and seeds)", "",
              "| model | pipeline | training steps | parameters | class accuracy | Fréchet distance | s / batch |",
              "|---|---|---|---|---|---|---|"]
    for name in ("DDT", "DiT"):
        x = c[name]
        lines.append(f"| {name} | `{x['pipeline']}` | {x['training_steps'] if x['training_steps'] is not None else '?'}"
                     f" | {x['parameters']:,} | {100 * x['class_accuracy']:.1f} % | {x['frechet_distance']:.3f} | "
                     f"{x['seconds_per_batch']:.3f} |")
    if c["DDT"]["training_steps"] != c["DiT"]["training_steps"]:
        lines += ["", "**Note: the two pipelines were not trained for the same number of steps.**"]
    lines += ["", (f"DDT (no sharing) / DiT sampling time: {c['ddt_over_dit_time']:.2f}×. Fréchet distance is genlab's "
              "classifier Fréchet distance against the real test split (comparable within genlab only)."), ""]
    return "\n".join(lines)


from .bench_nar import bench_nar  # noqa: E402  (bench_nar imports nothing from this module)

BENCHES = {"ddt": bench_ddt, "nar": bench_nar}


def run_bench(name: str, **kwargs) -> dict:
    """Run the bench `name` (or every registered bench for "all") with the keyword arguments it accepts.
    Returns that bench's result, or {name: result} for "all"."""
    if name == "all":
        if kwargs.get("out"):
            raise GenlabError("--out names one report; with 'all' every bench writes its default bench/<name>.md")
        kwargs.pop("out", None)
        results = {n: run_bench(n, **kwargs) for n in BENCHES}
        write_results(results)
        return results
    if name not in BENCHES:
        raise GenlabError(f"unknown bench {name!r}; choose from {sorted(BENCHES) + ['all']}")
    fn = BENCHES[name]
    accepted = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})


def write_results(results: dict, folder: str = "bench") -> tuple[str, str]:
    """bench/results.md (one row per method: baseline, speed ratio, quality of both, command) and bench/results.png
    (speed ratio against class accuracy, method and baseline joined by a line). Returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# genlab bench all: every method against its baseline, measured in one run each", "",
             ("Speed ratio = the baseline's sampling time / the method's on the same batch and seeds (> 1: the method "
              "is faster); \"trick alone\" = the same model with its acceleration off / on. Class accuracy and "
              "Fréchet distance from genlab's shipped classifier for the data set (Fréchet distance on its features; "
              "lower is better). Full reports: bench/<name>.md."), "",
             "| method | baseline | data | speed ratio | trick alone | method acc. / FD | baseline acc. / FD | command |",
             "|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in results.items():
        s = result["summary"]
        m, b = s["method_quality"], s["baseline_quality"]
        trick = f"{s['trick_speed_ratio']:.2f}×" if s.get("trick_speed_ratio") else "—"
        lines.append(f"| {s['method']} | {s['baseline']} | {s['dataset']} | {s['speed_ratio']:.2f}× | {trick} | "
                     f"{100 * m['class_accuracy']:.1f} % / {m['frechet_distance']:.2f} | "
                     f"{100 * b['class_accuracy']:.1f} % / {b['frechet_distance']:.2f} | `{s['command']}` |")
        xs, ys = [1.0, s["speed_ratio"]], [100 * b["class_accuracy"], 100 * m["class_accuracy"]]
        ax.plot(xs, ys, "-", color="gray", lw=1)
        ax.scatter(xs[:1], ys[:1], marker="s", label=f"{name}: baseline")
        ax.scatter(xs[1:], ys[1:], marker="o", label=f"{name}: method")
    ax.axvline(1.0, color="black", lw=0.5)
    ax.set_xlabel("speed ratio vs baseline (×)")
    ax.set_ylabel("class accuracy (%)")
    ax.set_title("genlab bench all: speed and quality")
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(folder, exist_ok=True)
    md, png = os.path.join(folder, "results.md"), os.path.join(folder, "results.png")
    fig.savefig(png, dpi=120)
    plt.close(fig)
    lines += ["", "![speed vs quality](results.png)", ""]
    write_report(md, "\n".join(lines))
    return md, png
