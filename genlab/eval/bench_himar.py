"""`genlab bench himar`: Hi-MAR against its MAR baseline, measured in one run on the same seeds.

Per model and batch size (1 and the throughput batch): backbone passes and diffusion-head passes of one call
(counted with forward hooks), FLOPs (torch.utils.flop_counter, split into backbone / heads / decode), wall-clock
(warm-up, round-robin repeats, median and spread) and where that time goes (backbone, heads, the rest, from
hooks timing one call). Quality: class accuracy and Fréchet distance over sampling seeds (mean ± spread), each
pipeline with its own recipe's sampling settings.

At this scale the diffusion heads, not the backbone, take the time (spec himar.md §9 check 10), so a third row,
"Hi-MAR fast", samples the same Hi-MAR pipeline with shorter respaced head chains (`--fast-head-steps` for the
low-res MLP head, `--fast-head2-steps` for the DiT head; 0 leaves the row out), timed round-robin with the other
two and scored on the same seeds: the trade the paper's speed claim rests on, measured instead of assumed. Since
MAR's MLP head is respaced the same way, a fourth row, "MAR fast", samples the MAR pipeline with the same
`--fast-head-steps` chain: the fast pair is compared with each other as the recipe pair is, so that a gain that
comes from the shorter chains alone is not credited to Hi-MAR.
"""

from __future__ import annotations

import time

from ..errors import GenlabError, check_positive_int
from .harness import (NUM_SAMPLES, OUT, REPEATS, SEEDS, THREADS, Bench, BenchArgument, BenchSummary, check_seed, check_seeds,
                      pipeline_call, pipeline_quality, ratio, time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, quality_table, write_report

PARTS = ("backbone", "head", "dense_head")
FAST = "Hi-MAR fast"
MAR_FAST = "MAR fast"


def _profile(pipe, run) -> dict:
    """Passes, batch rows, FLOPs and seconds of each part (backbone, heads) in one call."""
    from torch.utils.flop_counter import FlopCounterMode

    model = pipe.transformer
    stats = {name: {"calls": 0, "seconds": 0.0} for name in PARTS if getattr(model, name, None) is not None}
    handles, starts = [], {}
    for name in stats:
        module = getattr(model, name)
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: starts.__setitem__(n, time.perf_counter())))

        def post(m, a, o, n=name):
            stats[n]["calls"] += 1
            stats[n]["seconds"] += time.perf_counter() - starts[n]
        handles.append(module.register_forward_hook(post))
    start = time.perf_counter()
    run()
    total = time.perf_counter() - start
    for h in handles:
        h.remove()
    with FlopCounterMode(display=False) as counter:
        run()
    # The sampler calls the parts directly, so the counter names them by their classes.
    by_module = counter.get_flop_counts()

    def of(class_name: str) -> int:
        return sum(by_module.get(class_name, {}).values())

    head_classes = {type(getattr(model, n)).__name__ for n in ("head", "dense_head")
                    if getattr(model, n, None) is not None}
    flops = {"backbone": of(type(model.backbone).__name__), "heads": sum(of(c) for c in head_classes),
             "total": of("Global")}
    return {"parts": stats, "flops": flops, "seconds": total,
            "rest_seconds": total - sum(s["seconds"] for s in stats.values())}


def bench_himar(mar_path: str = "pipelines/mar-fashion", himar_path: str = "pipelines/himar-fashion",
                batch_size: int = 16, repeats: int = 3, num_samples: int = 200, seeds=(0, 1, 2), seed: int = 0,
                threads: int = 2, fast_head_steps: int = 25, fast_head2_steps: int = 15,
                out: str | None = "bench/himar.md") -> dict:
    """Benchmark Hi-MAR vs MAR; see the module doc."""

    from ..pipelines.loading import sampling_defaults, training_info

    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_seed(seed)
    seeds = check_seeds(seeds)
    fast = bool(fast_head_steps or fast_head2_steps)
    if fast:
        for value, name in ((fast_head_steps, "fast_head_steps"), (fast_head2_steps, "fast_head2_steps")):
            check_positive_int(value, name)  # both, or neither (0 0: no fast row)
    arguments = dict(mar_path=mar_path, himar_path=himar_path, batch_size=batch_size, repeats=repeats,
                     num_samples=num_samples, seeds=seeds, seed=seed, threads=threads,
                     fast_head_steps=fast_head_steps, fast_head2_steps=fast_head2_steps, out=out)
    with torch_threads(threads):
        pipes = {"MAR": load_expected(mar_path, "MARPipeline", "--mar"),
                 "Hi-MAR": load_expected(himar_path, "HiMARPipeline", "--himar")}
        infos = {"MAR": training_info(mar_path), "Hi-MAR": training_info(himar_path)}
        dataset = infos["Hi-MAR"].get("dataset")
        if dataset is None or infos["MAR"].get("dataset") != dataset:
            raise GenlabError(f"{mar_path} and {himar_path} must both have a training_info.json naming the same "
                              "data set")
        samples = {}
        for name, path in (("MAR", mar_path), ("Hi-MAR", himar_path)):
            steps, guidance, sample = sampling_defaults(path)
            samples[name] = {**sample, "num_inference_steps": steps, "guidance_scale": guidance}
        paths = {"MAR": mar_path, "Hi-MAR": himar_path}
        overrides = {}
        if fast:  # the same pipeline objects, only the call's head chains shorter (MAR's MLP head as Hi-MAR's)
            pipes[MAR_FAST], paths[MAR_FAST] = pipes["MAR"], mar_path
            overrides[MAR_FAST] = {"head_steps": fast_head_steps}
            pipes[FAST], paths[FAST] = pipes["Hi-MAR"], himar_path
            overrides[FAST] = {"head_steps": fast_head_steps, "head2_steps": fast_head2_steps}
            for name, base in ((MAR_FAST, "MAR"), (FAST, "Hi-MAR")):
                samples[name] = {**samples[base], **overrides[name]}
        num_classes = pipes["Hi-MAR"].transformer.config.num_classes

        speed = []
        for batch in sorted({1, batch_size}):
            labels = [i % num_classes for i in range(batch)]
            calls = {name: pipeline_call(pipe, labels, samples[name], seed) for name, pipe in pipes.items()}
            _, timing = time_round_robin(calls, repeats)
            profiles = {name: _profile(pipes[name], calls[name]) for name in pipes}
            speed.append({"batch_size": batch, "seconds": {n: t.median for n, t in timing.items()},
                          "spread": {n: t.spread for n, t in timing.items()},
                          "times": {n: t.seconds for n, t in timing.items()},
                          "himar_over_mar_speed": ratio(timing["MAR"], timing["Hi-MAR"]), "profiles": profiles})
            if fast:
                speed[-1]["fast_over_mar_speed"] = ratio(timing["MAR"], timing[FAST])
                speed[-1]["fast_over_mar_fast_speed"] = ratio(timing[MAR_FAST], timing[FAST])

        _, quality = pipeline_quality(pipes, paths, num_samples, seeds, overrides)

    m, h = quality["MAR"], quality["Hi-MAR"]
    big = speed[-1]
    verdict = {"fd_better": h["fd_mean"] + h["fd_std"] < m["fd_mean"] - m["fd_std"],
               "fd_not_worse": h["fd_mean"] <= m["fd_mean"] + max(m["fd_std"], h["fd_std"]),
               "not_slower": big["seconds"]["Hi-MAR"] <= big["seconds"]["MAR"]}
    if fast:
        f = quality[FAST]
        verdict["fast_fd_not_worse"] = f["fd_mean"] <= m["fd_mean"] + max(m["fd_std"], f["fd_std"])
        verdict["fast_fd_below"] = f["fd_mean"] < m["fd_mean"]
        verdict["fast_not_slower"] = big["seconds"][FAST] <= big["seconds"]["MAR"]
        mf = quality[MAR_FAST]  # the fair pair: both with the shorter chains
        verdict["fast_pair_fd_below"] = f["fd_mean"] < mf["fd_mean"]
        verdict["fast_pair_fd_not_worse"] = f["fd_mean"] <= mf["fd_mean"] + max(mf["fd_std"], f["fd_std"])
        verdict["fast_pair_not_slower"] = big["seconds"][FAST] <= big["seconds"][MAR_FAST]
    command = BENCH.command(arguments)
    result = {"bench": "himar", "command": command, "arguments": arguments, "machine": machine_info(threads),
              "dataset": dataset, "speed": speed, "quality": quality, "verdict": verdict}
    result["summary"] = BenchSummary(
        method=f"Hi-MAR ({samples['Hi-MAR']['num_inference_steps']} dense steps after the pivots)",
        baseline=f"MAR ({samples['MAR']['num_inference_steps']} steps, MLP head)", dataset=dataset,
        speed_ratio=big["himar_over_mar_speed"],
        method_quality={"class_accuracy": h["accuracy_mean"], "frechet_distance": h["fd_mean"]},
        baseline_quality={"class_accuracy": m["accuracy_mean"], "frechet_distance": m["fd_mean"]},
        command=command, extra=({"fast": {"sample": samples[FAST], "speed_ratio": big["fast_over_mar_speed"],
                                          "frechet_distance": quality[FAST]["fd_mean"],
                                          "class_accuracy": quality[FAST]["accuracy_mean"]},
                                 "mar_fast": {"sample": samples[MAR_FAST],
                                              "speed_ratio": big["fast_over_mar_fast_speed"],
                                              "frechet_distance": quality[MAR_FAST]["fd_mean"],
                                              "class_accuracy": quality[MAR_FAST]["accuracy_mean"]}} if fast else {})
    ).to_dict()
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    lines = ["# Hi-MAR bench: low-res pivots and a DiT head vs MAR", "", f"Command: `{r['command']}`", "",
             machine_line(r["machine"]), "",
             ("Speed: one call per model and batch (CFG doubles the rows), median (min-max) of the timed calls after "
              "a warm-up, the two models timed round-robin; passes counted with forward hooks, FLOPs by "
              "torch.utils.flop_counter, the time split measured by hooks on one more call."), "",
             "| batch | model | s / call (min-max) | backbone passes | MLP-head passes | DiT-head passes | GFLOP total "
             "| GFLOP backbone / heads | s backbone / heads / rest |", "|---|---|---|---|---|---|---|---|---|"]
    for s in r["speed"]:
        for name in s["profiles"]:
            p = s["profiles"][name]
            parts = p["parts"]
            lo, hi = s["spread"][name]
            head_flops = p["flops"]["heads"]
            head_seconds = sum(parts[k]["seconds"] for k in ("head", "dense_head") if k in parts)
            lines.append(f"| {s['batch_size']} | {name} | {s['seconds'][name]:.3f} ({lo:.3f}-{hi:.3f}) | "
                         f"{parts['backbone']['calls']} | {parts['head']['calls']} | "
                         f"{parts.get('dense_head', {}).get('calls', 0)} | {p['flops']['total'] / 1e9:.2f} | "
                         f"{p['flops']['backbone'] / 1e9:.2f} / {head_flops / 1e9:.2f} | "
                         f"{parts['backbone']['seconds']:.3f} / {head_seconds:.3f} / {p['rest_seconds']:.3f} |")
        lines.append(f"| {s['batch_size']} | MAR / Hi-MAR time | {s['himar_over_mar_speed']:.2f}× | | | | | | |")
        if "fast_over_mar_speed" in s:
            lines.append(f"| {s['batch_size']} | MAR / {FAST} time | {s['fast_over_mar_speed']:.2f}× | | | | | | |")
            lines.append(f"| {s['batch_size']} | {MAR_FAST} / {FAST} time | {s['fast_over_mar_fast_speed']:.2f}× "
                         "| | | | | | |")
    lines += ["", *quality_table(r["quality"], list(r["quality"]))]
    v = r["verdict"]
    lines += ["", (f"Hi-MAR's Fréchet distance below MAR's beyond the spread: {'yes' if v['fd_better'] else 'no'}; "
                   f"not worse within the spread: {'yes' if v['fd_not_worse'] else 'no'}; Hi-MAR no slower at the "
                   f"largest batch: {'yes' if v['not_slower'] else 'no'}."), ""]
    if "fast_not_slower" in v:
        a = r["arguments"]
        lines += [(f"{FAST} (head chains {a['fast_head_steps']} / {a['fast_head2_steps']} steps instead of the "
                   f"recipe's): Fréchet distance below MAR's: {'yes' if v['fast_fd_below'] else 'no'}; not worse "
                   f"within the spread: {'yes' if v['fast_fd_not_worse'] else 'no'}; no slower than MAR at the "
                   f"largest batch: {'yes' if v['fast_not_slower'] else 'no'}."), "",
                  (f"Against {MAR_FAST} (MAR with the same {a['fast_head_steps']}-step MLP head chain, the fair pair): "
                   f"{FAST}'s Fréchet distance below: {'yes' if v['fast_pair_fd_below'] else 'no'}; not worse within "
                   f"the spread: {'yes' if v['fast_pair_fd_not_worse'] else 'no'}; no slower at the largest batch: "
                   f"{'yes' if v['fast_pair_not_slower'] else 'no'}."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "himar", bench_himar,
    "Hi-MAR vs MAR: backbone and head passes, FLOPs, wall-clock at batch 1 and the throughput batch with its split "
    "into backbone / heads, and quality over sampling seeds.",
    arguments=(
        BenchArgument("--mar", "mar_path", "MAR pipeline folder (the baseline)"),
        BenchArgument("--himar", "himar_path", "Hi-MAR pipeline folder"),
        BenchArgument("--batch-size", "batch_size", "the throughput batch (batch 1 is always timed too)", int),
        REPEATS,
        NUM_SAMPLES,
        SEEDS,
        BenchArgument("--seed", "seed", "seed of the timed calls", int),
        BenchArgument("--fast-head-steps", "fast_head_steps", "the fast row's low-res MLP head chain (0 0: no row)", int),
        BenchArgument("--fast-head2-steps", "fast_head2_steps", "the fast row's DiT head chain", int),
        THREADS,
        OUT,
    ),
)
