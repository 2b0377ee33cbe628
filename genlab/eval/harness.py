"""The harness every `genlab bench` runs on: declared arguments, input checks, a torch thread count, warm-up and
interleaved (round-robin) timing with median and spread, quality over several seeds, and a typed summary.

A bench is a function with keyword arguments and defaults plus a `Bench` declaration of the flags `genlab bench
<name>` offers for them (the defaults shown by `--help` are read from the function, so they are the ones the code
uses). A method registers its `Bench` in its manifest (`genlab.registry`). Bench modules import torch inside their
functions, so that `genlab bench --help` lists every bench without loading it.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..errors import GenlabError, check_int, check_positive_int


@dataclass(frozen=True)
class BenchArgument:
    """One flag of a bench: `flag` on the command line, `dest` the bench function's keyword argument (type bool:
    a switch that takes no value)."""

    flag: str
    dest: str
    help: str
    type: Callable = str
    nargs: str | int | None = None
    metavar: str | tuple | None = None


@dataclass(frozen=True)
class Bench:
    name: str
    run: Callable[..., dict]
    description: str
    arguments: tuple[BenchArgument, ...] = ()

    def defaults(self) -> dict:
        return {k: p.default for k, p in inspect.signature(self.run).parameters.items()
                if p.default is not inspect.Parameter.empty}

    def add_arguments(self, parser: argparse.ArgumentParser, seen: set | None = None) -> None:
        """Add this bench's flags to `parser` (each with its default from the function); skip flags in `seen`."""
        defaults = self.defaults()
        for a in self.arguments:
            if seen is not None and a.flag in seen:
                continue
            default = defaults.get(a.dest)
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            text = f"{a.help} (default: {shown if shown not in (None, '') else 'none'})"
            if a.type is bool:  # a switch: the flag alone turns it on
                parser.add_argument(a.flag, dest=a.dest, action="store_const", const=True, default=None, help=text)
            else:
                parser.add_argument(a.flag, dest=a.dest, type=a.type, nargs=a.nargs, metavar=a.metavar, default=None,
                                    help=text)
            if seen is not None:
                seen.add(a.flag)

    def __call__(self, **kwargs) -> dict:
        """Run with the keyword arguments this bench takes (None = its default); others are ignored."""
        accepted = inspect.signature(self.run).parameters
        return self.run(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})

    def command(self, values: dict) -> str:
        """The `genlab bench` command line that reproduces a run with these argument values."""
        parts = ["genlab", "bench", self.name]
        for a in self.arguments:
            value = values.get(a.dest)
            if value is None or value is False or (isinstance(value, (list, tuple)) and not value):
                continue
            if value is True and a.type is bool:
                parts.append(a.flag)
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            parts += [a.flag, *("''" if str(v) == "" else str(v) for v in items)]
        return " ".join(parts)


# Flags every bench offers the same way.
THREADS = BenchArgument("--threads", "threads", "torch threads during the bench", int)
REPEATS = BenchArgument("--repeats", "repeats", "timed calls per configuration, the median is reported", int)
OUT = BenchArgument("--out", "out", "markdown report file")
NUM_SAMPLES = BenchArgument("--num-samples", "num_samples", "class-balanced samples per quality seed", int)
SEEDS = BenchArgument("--seeds", "seeds", "sampling seeds of the quality runs (mean and spread reported)", int, "+")
DEVICE = BenchArgument("--device", "device", "where the timed calls run: cpu, or cuda where a GPU is present", str)


# ---------------------------------------------------------------- checks
def check_seed(seed) -> int:
    return check_int(seed, "seed", minimum=0)


def check_seeds(seeds) -> list[int]:
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else [seeds]
    if not seeds:
        raise GenlabError("give at least one sampling seed")
    return [check_seed(s) for s in seeds]


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run the block with `threads` torch intra-op threads, restoring the previous count afterwards."""
    import torch

    threads = check_positive_int(threads, "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_device(device):
    """`device` as a torch.device, cpu or an available CUDA GPU, else a one-line error."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GenlabError(f"unknown device {device!r}; use cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise GenlabError(f"device {device!r} is not supported by the benches; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GenlabError(f"device {device!r}: no CUDA GPU is available here (torch.cuda.is_available() is False)")
    return dev


def device_clock(device) -> Callable[[], float]:
    """A host clock that first waits for `device` (CUDA kernels run asynchronously, so a host timer alone would
    time their launches, not their work); time.perf_counter on CPU."""
    import torch

    if torch.device(device).type != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def synchronized(fn: Callable[[], Any], device) -> Callable[[], Any]:
    """`fn` followed by a wait for `device`, so that timing the call times the device's work (fn itself on CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return run


# ---------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds of `repeats` timed calls: the median and the spread (min, max)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.seconds), max(self.seconds)

    def to_dict(self) -> dict:
        return {"median": self.median, "min": self.spread[0], "max": self.spread[1], "seconds": list(self.seconds)}


def time_round_robin(calls: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True) -> tuple[dict, dict]:
    """Call every entry once untimed (warm-up; its return value is kept), then `repeats` rounds in which each is
    timed once in turn, so that a drift in machine load hits all alike. Returns (warm-up results, name -> Timing)."""
    repeats = check_positive_int(repeats, "repeats")
    results = {name: fn() for name, fn in calls.items()} if warmup else {}
    seconds = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return results, {name: Timing(ts) for name, ts in seconds.items()}



def count_flops(run: Callable[[], Any]) -> tuple[int, Any]:
    """(FLOPs of one call of `run`, its return value), counted by torch.utils.flop_counter: matmuls, convolutions
    and attention, the arithmetic a matmul peak measures (elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        output = run()
    return counter.get_total_flops(), output


def pipeline_call(pipe, labels, sample: dict, seed: int, inputs: dict | None = None):
    """A zero-argument call of `pipe` on class labels (or on the conditioning `inputs`) with the sample settings it
    accepts, a fresh seeded generator each time (so that repeated timed calls draw the same samples); tensors out,
    no PIL conversion."""
    import torch

    from ..pipelines.loading import accepted

    inputs = {"class_labels": labels} if inputs is None else inputs
    kwargs = accepted(pipe, sample)

    def run():
        return pipe(**inputs, generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs)
    return run

def conditioned_call(pipe, dataset: str, batch: int, sample: dict, seed: int):
    """As `pipeline_call`, on genlab eval's conditioning of `batch` items: class labels 0..K-1, .. or the data set's
    test captions for prompt pipelines."""
    from .runner import evaluation_inputs

    inputs = evaluation_inputs(pipe, dataset, batch)[0]
    return pipeline_call(pipe, None, sample, seed, inputs)


def ratio(baseline: Timing, method: Timing) -> float:
    """The speed ratio baseline / method of two medians measured in the same run (> 1: the method is faster)."""
    return baseline.median / method.median


# ---------------------------------------------------------------- quality
def over_seeds(measure: Callable[[int], dict], seeds) -> dict:
    """Run `measure(seed) -> {metric: value}` for every seed; returns metric -> {values, mean, std}."""
    return summarize([measure(s) for s in check_seeds(seeds)])


def summarize(runs: list[dict]) -> dict:
    """metric -> {values, mean, std} of runs [{metric: value}, ...] (one per seed)."""
    out = {}
    for key in runs[0]:
        values = [float(r[key]) for r in runs]
        out[key] = {"values": values, "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out



def pipeline_quality(pipes: dict, paths: dict, num_samples: int, seeds,
                     overrides: dict | None = None) -> tuple[str, dict]:
    """Class accuracy and Fréchet distance over sampling seeds of trained pipelines (name -> pipeline, name ->
    folder), each sampled with its own recipe's settings updated by `overrides` (name -> settings), class-balanced.
    All must name the same data set in their training_info.json. Returns (data set, name -> {pipeline, parameters, sample, training_steps, accuracy_mean,
    accuracy_std, fd_mean, fd_std, accuracy (per seed), fd (per seed)})."""
    from ..errors import GenlabError
    from ..modeling import count_parameters
    from ..pipelines.loading import sampling_defaults, training_info
    from . import class_accuracy, frechet_distance, load_classifier, real_reference
    from .runner import generate_balanced

    infos = {n: training_info(p) for n, p in paths.items()}
    datasets = {info.get("dataset") for info in infos.values()}
    if len(datasets) != 1 or None in datasets:
        raise GenlabError(f"{' and '.join(paths.values())} must all have a training_info.json naming the same data set")
    dataset = datasets.pop()
    classifier, reals = load_classifier(dataset), real_reference(dataset, "test")
    quality = {}
    for name, pipe in pipes.items():
        steps, guidance, sample = sampling_defaults(paths[name])
        sample = {**sample, **(overrides or {}).get(name, {})}
        steps, guidance = sample.get("num_inference_steps", steps), sample.get("guidance_scale", guidance)
        extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
        k = pipe.transformer.config.num_classes

        def measure(seed, pipe=pipe, steps=steps, guidance=guidance, extra=extra, k=k):
            images, labels = generate_balanced(pipe, k, num_samples, steps, guidance, seed, 100, **extra)
            return {"accuracy": class_accuracy(images, labels, classifier),
                    "fd": frechet_distance(reals, images, classifier)}

        q = over_seeds(measure, seeds)
        quality[name] = {"pipeline": paths[name], "parameters": count_parameters(pipe.transformer),
                         "sample": sample, "training_steps": infos[name].get("steps"),
                         **{f"{m}_{stat}": q[m][stat] for m in q for stat in ("mean", "std")},
                         "accuracy": q["accuracy"]["values"], "fd": q["fd"]["values"]}
    return dataset, quality


@dataclass
class BenchSummary:
    """The one row a bench contributes to `genlab bench all`: the method against its baseline, measured in one run.
    speed_ratio = baseline time / method time; trick_speed_ratio = the method with its acceleration off / on."""

    method: str
    baseline: str
    dataset: str
    speed_ratio: float
    method_quality: dict
    baseline_quality: dict
    command: str
    trick_speed_ratio: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
