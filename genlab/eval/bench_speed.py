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
* the ops that take the most self CPU time in one more throughput call, from torch.profiler;
* with `--precisions fp32 bf16` and/or `--compile`: the same calls in bf16 autocast and on a torch.compile'd copy
  (genlab.pipelines.sampling_modes), timed round-robin with the fp32 calls, their speed-up over fp32, and the
  quality difference of the throughput batch on the same seeds (class accuracy, PSNR against the fp32 samples);
  the bf16 matmul peak is measured beside the fp32 one.
* with `--device cuda`: all of it on the GPU (pipelines moved there, every timed region ends with a device
  synchronize, the part hooks synchronize before they read the clock, the profile lists CUDA time, and the
  report names the attention kernels SDPA dispatched to in each mode), with the GPU's matmul peaks measured in the
  same run on larger matrices. These are GPU figures: the report says so in its title.
"""

from __future__ import annotations

import os
import time

from ..errors import GenlabError, check_positive_int, first_line
from .harness import (DEVICE, OUT, REPEATS, THREADS, Bench, BenchArgument, check_device, conditioned_call, count_flops,
                      device_clock, ratio, synchronized, time_round_robin, torch_threads)
from .report import machine_info, machine_line, write_report

MATMUL_SIZES = (512, 1024, 2048)
GPU_MATMUL_SIZES = (2048, 4096, 8192)  # a GPU needs larger products to reach its peak
NETWORKS = ("transformer", "unet")
DECODERS = ("image_tokenizer", "vae")
TEXT = ("text_encoder",)
PARTS = ("network", "head", "decode", "text", "rest")


def matmul_peak(sizes=None, repeats: int = 5, precision: str = "fp32", device="cpu") -> dict:
    """The best GFLOP/s of an n x n matmul in `precision` on `device` over `sizes` (default: MATMUL_SIZES on CPU,
    GPU_MATMUL_SIZES on a GPU; random operands, each size warmed up, then the fastest of `repeats`)."""
    import torch

    from ..pipelines.sampling_modes import PRECISIONS

    device = torch.device(device)
    sizes = sizes or (GPU_MATMUL_SIZES if device.type == "cuda" else MATMUL_SIZES)
    dtype = PRECISIONS[precision] or torch.float32
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        torch.mm(a, b)
        seconds = min(_timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
        best[n] = 2 * n ** 3 / seconds / 1e9
    return {"gflops": max(best.values()), "by_size": best}


def _timed(fn, device="cpu") -> float:
    clock = device_clock(device)
    start = clock()
    fn()
    return clock() - start


class PartTimer:
    """Exclusive wall-clock per part of a pipeline, from forward pre/post hooks on every module of each part: the
    innermost running part gets the time, so the head's seconds are not counted again in the network's."""

    def __init__(self, parts: dict, clock=time.perf_counter):
        self.clock = clock  # on a GPU a synchronizing clock, so that each part is charged its own kernels
        self.seconds = {name: 0.0 for name in parts}
        self.stack: list[list] = []  # [part, start of its current slice]
        self.handles = []
        for name, modules in parts.items():
            for root in modules:
                for module in root.modules():
                    self.handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self.enter(n)))
                    self.handles.append(module.register_forward_hook(lambda m, a, o, n=name: self.leave(n)))

    def enter(self, part: str) -> None:
        now = self.clock()
        if self.stack:
            top = self.stack[-1]
            self.seconds[top[0]] += now - top[1]
            top[1] = now
        self.stack.append([part, now])

    def leave(self, part: str) -> None:
        now = self.clock()
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


def _profile(run, device):
    """The key averages of torch.profiler over one call (CPU activity, and CUDA's on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    return prof.key_averages()


def _self_time(event, device) -> float:
    """An op's self time in microseconds: on the GPU its kernels' time, on CPU its CPU time."""
    if device.type == "cuda":
        return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
    return event.self_cpu_time_total


def _top_ops(events, count: int, device) -> list[dict]:
    events = sorted(events, key=lambda e: _self_time(e, device), reverse=True)
    total = sum(_self_time(e, device) for e in events) or 1
    return [{"op": e.key, "calls": e.count, "self_seconds": _self_time(e, device) / 1e6,
             "share": _self_time(e, device) / total} for e in events[:count]]


def attention_kernels(events) -> dict:
    """op -> calls of the scaled-dot-product-attention kernels in a profile (flash, memory-efficient, cuDNN or the
    math fallback): which kernel SDPA dispatched to."""
    return {e.key: e.count for e in events
            if e.key.startswith("aten::_scaled_dot_product") or e.key.startswith("aten::_flash_attention")
            or e.key.startswith("aten::_efficient_attention")}


def _samples(output, pipe):
    """The (N, C, H, W) images (frames of clips flattened) of a pipeline output in [-1, 1]."""
    x = output.frames if getattr(pipe, "produces_video", False) else output.images
    return (x.flatten(0, 1) if x.dim() == 5 else x).float().cpu() * 2 - 1


def variant_calls(pipe, compiled, dataset: str, batch: int, sample: dict, seed: int, precisions,
                  device="cpu") -> dict:
    """name -> zero-argument seeded call: the pipeline at each precision, and the compiled copy (fp32) if given;
    each ends with a wait for `device`, so that a host timer around it times the device's work."""
    from ..pipelines.sampling_modes import sampling_precision

    def at(run, precision):
        def call():
            with sampling_precision(pipe, precision):
                return run()
        return call

    run = conditioned_call(pipe, dataset, batch, sample, seed)
    calls = {p: (run if p == "fp32" else at(run, p)) for p in precisions}
    if compiled is not None:
        calls["compiled"] = conditioned_call(compiled, dataset, batch, sample, seed)
    return {name: synchronized(call, device) for name, call in calls.items()}


def variant_quality(outputs: dict, pipe, dataset: str, batch: int) -> dict:
    """Per variant, on the same seeds: class accuracy of its samples (genlab eval's classifier and conditioning) and
    their PSNR against the fp32 samples."""
    from . import class_accuracy, load_classifier
    from .metrics import psnr
    from .runner import evaluation_inputs

    labels = evaluation_inputs(pipe, dataset, batch)[1]
    classifier = load_classifier(dataset)
    images = {n: _samples(o, pipe) for n, o in outputs.items()}
    frames = images["fp32"].shape[0] // labels.shape[0]
    labels = labels.repeat_interleave(frames)
    return {n: {"class_accuracy": class_accuracy(x, labels, classifier),
                "psnr_vs_fp32": psnr(x.clamp(-1, 1), images["fp32"].clamp(-1, 1)) if n != "fp32" else None}
            for n, x in images.items()}


def pipeline_speed(path: str, batch_sizes, repeats: int, peak_gflops: float, seed: int = 0, top_ops: int = 5,
                   precisions=("fp32",), compile: bool = False, device="cpu") -> dict:
    """The speed rows of one pipeline folder; see the module doc."""
    from ..pipelines.loading import load_pipeline, sampling_defaults, training_info
    from ..pipelines.sampling_modes import compile_pipeline, sampling_precision

    device = check_device(device)
    pipe = load_pipeline(path).to(device)
    pipe.set_progress_bar_config(disable=True)
    compiled = None
    if compile:
        compiled = load_pipeline(path).to(device)
        compiled.set_progress_bar_config(disable=True)
        compile_pipeline(compiled)
    dataset = training_info(path).get("dataset")
    steps, guidance, sample = sampling_defaults(path)
    sample = {**sample, "num_inference_steps": steps, "guidance_scale": guidance}
    rows, quality, compile_seconds = [], None, None
    for batch in batch_sizes:
        calls = variant_calls(pipe, compiled, dataset, batch, sample, seed, precisions, device)
        flops, first = count_flops(calls["fp32"])  # doubles as the fp32 warm-up call
        outputs = {"fp32": first}
        for name, call in calls.items():
            if name != "fp32":
                start = time.perf_counter()
                outputs[name] = call()  # warm-up; the compiled copy's first call compiles (calls end synchronized)
                if name == "compiled" and compile_seconds is None:
                    compile_seconds = time.perf_counter() - start
        _, timing = time_round_robin(calls, repeats, warmup=False)
        seconds = timing["fp32"].median
        rows.append({"batch_size": batch, "seconds": seconds, "times": timing["fp32"].seconds,
                     "images_per_second": batch / seconds, "flops_per_image": flops / batch,
                     "gflops_per_second": flops / seconds / 1e9, "share_of_peak": flops / seconds / 1e9 / peak_gflops,
                     "variants": {n: {**t.to_dict(), "speedup": ratio(timing["fp32"], t)}
                                  for n, t in timing.items() if n != "fp32"}})
        if batch == max(batch_sizes) and len(calls) > 1 and dataset:
            quality = variant_quality(outputs, pipe, dataset, batch)
    big = conditioned_call(pipe, dataset, max(batch_sizes), sample, seed)
    timer = PartTimer(pipeline_parts(pipe), device_clock(device))
    try:
        total = _timed(big, device)
    finally:
        timer.remove()
    parts = {**timer.seconds, "rest": total - sum(timer.seconds.values())}
    events = _profile(synchronized(big, device), device) if top_ops else []
    kernels = {"fp32": attention_kernels(events)} if top_ops else {}
    for precision in precisions[1:] if top_ops else ():
        def at_precision(p=precision):
            with sampling_precision(pipe, p):
                return big()
        kernels[precision] = attention_kernels(_profile(synchronized(at_precision, device), device))
    return {"pipeline": path, "class": type(pipe).__name__, "dataset": dataset, "sample": sample, "rows": rows,
            "parts": {k: v / total for k, v in parts.items()}, "parts_seconds": total,
            "variant_quality": quality, "compile_seconds": compile_seconds,
            "top_ops": _top_ops(events, top_ops, device) if top_ops else [], "attention_kernels": kernels}


def shipped_pipelines(folder: str = "pipelines") -> list[str]:
    if not os.path.isdir(folder):
        raise GenlabError(f"no pipelines folder {folder}; name the pipelines with --pipelines")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, n, "model_index.json")))


def bench_speed(pipelines=(), batch_size: int = 64, repeats: int = 2, top_ops: int = 5, precisions=("fp32",),
                compile: bool = False, device: str = "cpu", threads: int = 2,
                out: str | None = "bench/speed.md") -> dict:
    """Benchmark the shipped pipelines' sampling speed against the matmul peak; see the module doc."""
    from ..pipelines.sampling_modes import check_precision, why_compile_cannot_run

    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    top_ops = int(top_ops)
    precisions = ["fp32", *dict.fromkeys(check_precision(p) for p in precisions if p != "fp32")]
    compile = bool(compile)
    dev = check_device(device)
    no_compiler = why_compile_cannot_run() if compile else None
    if no_compiler:
        raise GenlabError(f"--compile: {no_compiler}")
    paths = list(pipelines) or shipped_pipelines()
    for p in paths:
        if not os.path.isfile(os.path.join(p, "model_index.json")):
            raise GenlabError(f"{p} is not a pipeline folder (no model_index.json)")
    arguments = dict(pipelines=list(pipelines), batch_size=batch_size, repeats=repeats, top_ops=top_ops,
                     precisions=precisions, compile=compile, device=device if dev.type != "cpu" else None,
                     threads=threads, out=out)
    with torch_threads(threads):
        peaks = {p: matmul_peak(precision=p, device=dev) for p in precisions}
        result = {"bench": "speed", "command": BENCH.command(arguments), "arguments": arguments,
                  "machine": machine_info(threads, dev), "peak": peaks["fp32"], "peaks": peaks, "pipelines": [],
                  "failed": []}
        for p in paths:  # one pipeline that cannot sample here (say, a missing package) does not void the others
            try:
                result["pipelines"].append(pipeline_speed(p, sorted({1, batch_size}), repeats,
                                                          peaks["fp32"]["gflops"], top_ops=top_ops,
                                                          precisions=precisions, compile=compile, device=dev))
            except Exception as e:  # noqa: BLE001 - reported in the table, by pipeline
                result["failed"].append({"pipeline": p, "error": f"{type(e).__name__}: {first_line(e)}"})
            if result["pipelines"]:  # the report so far: a long run stopped midway keeps what it measured
                write_report(out, _markdown(result))
    if not result["pipelines"]:
        raise GenlabError("no pipeline could be timed: " + "; ".join(
            f"{f['pipeline']}: {f['error']}" for f in result["failed"]))
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    a, peak, gpu = r["arguments"], r["peak"], r["machine"].get("gpu")
    sizes = ", ".join(f"{n}: {g:.0f}" for n, g in peak["by_size"].items())
    title = "# Speed bench: sampling FLOP/s against the matmul peak" + (f" — GPU figures ({gpu})" if gpu else "")
    lines = [title, "", f"Command: `{r['command']}`", "", machine_line(r["machine"]), "",
             f"fp32 matmul peak, measured in this run{' on the GPU (TF32 off, as torch defaults)' if gpu else ''}: "
             f"**{peak['gflops']:.0f} GFLOP/s** (n x n matmuls, GFLOP/s by n: {sizes}).", "",
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
    if r.get("failed"):
        lines += ["", "Not timed (the error each raised): " + "; ".join(
            f"{os.path.basename(f['pipeline'])}: {f['error']}" for f in r["failed"]) + "."]
    lines += _variant_lines(r)
    if any(p["top_ops"] for p in r["pipelines"]):
        lines += ["", f"Top ops by self {'CUDA' if gpu else 'CPU'} time (torch.profiler, one batch-{a['batch_size']} "
                  "call):", ""]
        for p in r["pipelines"]:
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f} %" for o in p["top_ops"])
            lines.append(f"- {os.path.basename(p['pipeline'])}: {ops}")
    if gpu and any(p.get("attention_kernels") for p in r["pipelines"]):
        lines += ["", "Attention kernels SDPA dispatched to (profiled calls per mode; the flash kernel needs a "
                  "half-precision call without a mask, masked calls go to the memory-efficient kernel):", ""]
        for p in r["pipelines"]:
            modes = "; ".join(f"{mode}: " + (", ".join(f"{k} ×{n}" for k, n in ks.items()) or "no SDPA call")
                              for mode, ks in p["attention_kernels"].items())
            lines.append(f"- {os.path.basename(p['pipeline'])}: {modes}")
    return "\n".join(lines) + "\n"


def _variant_lines(r: dict) -> list[str]:
    """The table of the other sampling modes against fp32, measured in the same run on the same seeds."""
    names = [n for n in r["pipelines"][0]["rows"][0]["variants"]] if r["pipelines"] else []
    if not names:
        return []
    peaks = ", ".join(f"{p}: {v['gflops']:.0f} GFLOP/s" for p, v in r["peaks"].items())
    lines = ["", f"Sampling modes against fp32, timed round-robin in this run (matmul peaks: {peaks}); quality of the "
             f"batch-{r['arguments']['batch_size']} samples on the same seeds: class accuracy (genlab eval's "
             "classifier) and PSNR against the fp32 samples.", "",
             "| pipeline | mode | batch | s / call (min-max) | speed-up over fp32 | class accuracy fp32 → mode | "
             "PSNR vs fp32 (dB) |", "|---|---|---|---|---|---|---|"]
    for p in r["pipelines"]:
        q = p["variant_quality"] or {}
        for name in names:
            for row in p["rows"]:
                v = row["variants"][name]
                cells = ["", ""]
                if row["batch_size"] == max(x["batch_size"] for x in p["rows"]) and name in q:
                    cells = [f"{100 * q['fp32']['class_accuracy']:.1f} → {100 * q[name]['class_accuracy']:.1f} %",
                             f"{q[name]['psnr_vs_fp32']:.1f}"]
                lines.append(f"| {os.path.basename(p['pipeline'])} | {name} | {row['batch_size']} | "
                             f"{v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f}) | {v['speedup']:.2f}× | "
                             + " | ".join(cells) + " |")
    compiled = [p for p in r["pipelines"] if p.get("compile_seconds") is not None]
    if compiled:
        lines += ["", "First call of the compiled copy (compiles): " + ", ".join(
            f"{os.path.basename(p['pipeline'])} {p['compile_seconds']:.0f} s" for p in compiled) + "."]
    return lines


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
        BenchArgument("--precisions", "precisions", "sampling precisions timed against fp32 in the same run "
                      "(fp32, bf16: autocast), with the quality difference on the same seeds", str, "+"),
        BenchArgument("--compile", "compile", "also time a torch.compile'd copy of every pipeline (regional: its "
                      "repeated blocks; the first call compiles, reported apart)", bool),
        DEVICE,
        THREADS,
        OUT,
    ),
)
