"""`genlab bench speed`: how close each shipped pipeline samples to this machine's matmul speed.

In one run: the fp32 matmul peak of this machine (the best GFLOP/s of square matmuls at the bench's thread
count), then for every pipeline folder (by default each one under `pipelines/`), sampled with its recipe's settings
on the conditioning `genlab eval` gives it:

* seconds per call at batch 1 and at the throughput batch (a warm-up call, then `repeats` timed calls; median);
* model FLOPs per image, counted by torch.utils.flop_counter on the warm-up call (matmuls, convolutions and
  attention: the arithmetic the matmul peak measures; elementwise work is not counted);
* achieved FLOP/s and its share of the peak;
* where one throughput call's time goes: the network (transformer or UNet), its head(s), the image decode, the
  text encoder, and the rest (sampling, scheduler steps, Python work and ops outside the modules). Each part is
  timed by hooks on every module of it, exclusively (a part's time leaves out the parts running inside it);
* the ops that take the most self CPU time in one more throughput call, from torch.profiler.
"""

from __future__ import annotations

import os
import time

from ..errors import GenlabError, check_positive_int
from .harness import OUT, REPEATS, THREADS, Bench, BenchArgument, conditioned_call, torch_threads
from .report import machine_info, machine_line, write_report

MATMUL_SIZES = (512, 1024, 2048)
NETWORKS = ("transformer", "unet")
DECODERS = ("image_tokenizer", "vae")
TEXT = ("text_encoder",)
PARTS = ("network", "head", "decode", "text", "rest")


def matmul_peak(sizes=MATMUL_SIZES, repeats: int = 5) -> dict:
    """The best fp32 GFLOP/s of an n x n matmul over `sizes` (each warmed up, then the fastest of `repeats`)."""
    import torch

    best = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        seconds = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
        best[n] = 2 * n ** 3 / seconds / 1e9
    return {"gflops": max(best.values()), "by_size": best}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class PartTimer:
    """Exclusive wall-clock per part of a pipeline, from forward pre/post hooks on every module of each part: the
    innermost running part gets the time, so the head's seconds are not counted again in the network's."""

    def __init__(self, parts: dict):
        self.seconds = {name: 0.0 for name in parts}
        self.stack: list[list] = []  # [part, start of its current slice]
        self.handles = []
        for name, modules in parts.items():
            for root in modules:
                for module in root.modules():
                    self.handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self.enter(n)))
                    self.handles.append(module.register_forward_hook(lambda m, a, o, n=name: self.leave(n)))

    def enter(self, part: str) -> None:
        now = time.perf_counter()
        if self.stack:
            top = self.stack[-1]
            self.seconds[top[0]] += now - top[1]
            top[1] = now
        self.stack.append([part, now])

    def leave(self, part: str) -> None:
        now = time.perf_counter()
        name, start = self.stack.pop()
        self.seconds[name] += now - start
        if self.stack:
            self.stack[-1][1] = now

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def pipeline_parts(pipe) -> dict:
    """part -> the modules that make it: the network, the network's children whose name says head, the image
    decoder, the text encoder (absent parts are left out)."""
    import torch.nn as nn

    components = pipe.components
    network = next((components[n] for n in NETWORKS if isinstance(components.get(n), nn.Module)), None)
    parts = {"network": [network] if network is not None else [],
             "head": [m for n, m in network.named_children() if "head" in n] if network is not None else [],
             "decode": [components[n] for n in DECODERS if isinstance(components.get(n), nn.Module)],
             "text": [components[n] for n in TEXT if isinstance(components.get(n), nn.Module)]}
    return {k: v for k, v in parts.items() if v}


def _flops(run) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def _top_ops(run, count: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_seconds": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:count]]


def pipeline_speed(path: str, batch_sizes, repeats: int, peak_gflops: float, seed: int = 0, top_ops: int = 5) -> dict:
    """The speed rows of one pipeline folder; see the module doc."""
    import statistics

    from ..pipelines.loading import load_pipeline, sampling_defaults, training_info

    pipe = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    dataset = training_info(path).get("dataset")
    steps, guidance, sample = sampling_defaults(path)
    sample = {**sample, "num_inference_steps": steps, "guidance_scale": guidance}
    rows = []
    for batch in batch_sizes:
        run = conditioned_call(pipe, dataset, batch, sample, seed)
        flops = _flops(run)  # doubles as the warm-up call
        times = [_timed(run) for _ in range(repeats)]
        seconds = statistics.median(times)
        rows.append({"batch_size": batch, "seconds": seconds, "times": times, "images_per_second": batch / seconds,
                     "flops_per_image": flops / batch, "gflops_per_second": flops / seconds / 1e9,
                     "share_of_peak": flops / seconds / 1e9 / peak_gflops})
    big = conditioned_call(pipe, dataset, max(batch_sizes), sample, seed)
    timer = PartTimer(pipeline_parts(pipe))
    try:
        total = _timed(big)
    finally:
        timer.remove()
    parts = {**timer.seconds, "rest": total - sum(timer.seconds.values())}
    return {"pipeline": path, "class": type(pipe).__name__, "dataset": dataset, "sample": sample, "rows": rows,
            "parts": {k: v / total for k, v in parts.items()}, "parts_seconds": total,
            "top_ops": _top_ops(big, top_ops) if top_ops else []}


def shipped_pipelines(folder: str = "pipelines") -> list[str]:
    if not os.path.isdir(folder):
        raise GenlabError(f"no pipelines folder {folder}; name the pipelines with --pipelines")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, n, "model_index.json")))


def bench_speed(pipelines=(), batch_size: int = 64, repeats: int = 2, top_ops: int = 5, threads: int = 2,
                out: str | None = "bench/speed.md") -> dict:
    """Benchmark the shipped pipelines' sampling speed against the matmul peak; see the module doc."""
    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    top_ops = int(top_ops)
    paths = list(pipelines) or shipped_pipelines()
    for p in paths:
        if not os.path.isfile(os.path.join(p, "model_index.json")):
            raise GenlabError(f"{p} is not a pipeline folder (no model_index.json)")
    arguments = dict(pipelines=list(pipelines), batch_size=batch_size, repeats=repeats, top_ops=top_ops,
                     threads=threads, out=out)
    with torch_threads(threads):
        peak = matmul_peak()
        rows = [pipeline_speed(p, sorted({1, batch_size}), repeats, peak["gflops"], top_ops=top_ops) for p in paths]
    result = {"bench": "speed", "command": BENCH.command(arguments), "arguments": arguments,
              "machine": machine_info(threads), "peak": peak, "pipelines": rows}
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    a, peak = r["arguments"], r["peak"]
    sizes = ", ".join(f"{n}: {g:.0f}" for n, g in peak["by_size"].items())
    lines = ["# Speed bench: sampling FLOP/s against the matmul peak", "", f"Command: `{r['command']}`", "",
             machine_line(r["machine"]), "",
             f"fp32 matmul peak, measured in this run: **{peak['gflops']:.0f} GFLOP/s** (n x n matmuls, GFLOP/s by n: "
             f"{sizes}).", "",
             ("Each pipeline with its recipe's sampling settings; seconds per call = median of "
              f"{a['repeats']} timed calls after a warm-up; FLOPs from torch.utils.flop_counter (matmuls, "
              "convolutions, attention). Time split of one batch-"
              f"{a['batch_size']} call by exclusive hooks on each part's modules; 'rest' is sampling, scheduler "
              "steps, Python work and ops outside the modules."), "",
             "| pipeline | batch | s / call | images / s | GFLOP / image | GFLOP/s | share of peak | network | head | "
             "decode | text | rest |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["pipelines"]:
        for row in p["rows"]:
            split = ["", "", "", "", ""]
            if row["batch_size"] == max(x["batch_size"] for x in p["rows"]):
                split = [f"{100 * p['parts'][k]:.0f} %" if k in p["parts"] else "—" for k in PARTS]
            lines.append(f"| {os.path.basename(p['pipeline'])} | {row['batch_size']} | {row['seconds']:.3f} | "
                         f"{row['images_per_second']:.1f} | {row['flops_per_image'] / 1e9:.3f} | "
                         f"{row['gflops_per_second']:.1f} | {100 * row['share_of_peak']:.0f} % | " + " | ".join(split)
                         + " |")
    if any(p["top_ops"] for p in r["pipelines"]):
        lines += ["", f"Top ops by self CPU time (torch.profiler, one batch-{a['batch_size']} call):", ""]
        for p in r["pipelines"]:
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in p["top_ops"])
            lines.append(f"- {os.path.basename(p['pipeline'])}: {ops}")
    return "\n".join(lines) + "\n"


BENCH = Bench(
    "speed", bench_speed,
    "every shipped pipeline's sampling time at batch 1 and 64, FLOPs per image and achieved FLOP/s as a share of "
    "the fp32 matmul peak measured in the same run, with where the time goes.",
    arguments=(
        BenchArgument("--pipelines", "pipelines", "pipeline folders (default: every one under pipelines/)",
                      str, "+"),
        BenchArgument("--batch-size", "batch_size", "the throughput batch (batch 1 is always timed too)", int),
        REPEATS,
        BenchArgument("--top-ops", "top_ops", "ops listed from the profile per pipeline (0: no profile)", int),
        THREADS,
        OUT,
    ),
)
