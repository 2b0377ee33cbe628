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
    """One flag of a bench: `flag` on the command line, `dest` the bench function's keyword argument."""

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
            parser.add_argument(a.flag, dest=a.dest, type=a.type, nargs=a.nargs, metavar=a.metavar, default=None,
                                help=f"{a.help} (default: {shown if shown not in (None, '') else 'none'})")
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
            if value is None or value is False:
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            parts += [a.flag, *("''" if str(v) == "" else str(v) for v in items)]
        return " ".join(parts)


# Flags every bench offers the same way.
THREADS = BenchArgument("--threads", "threads", "torch threads during the bench", int)
REPEATS = BenchArgument("--repeats", "repeats", "timed calls per configuration, the median is reported", int)
OUT = BenchArgument("--out", "out", "markdown report file")


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


def ratio(baseline: Timing, method: Timing) -> float:
    """The speed ratio baseline / method of two medians measured in the same run (> 1: the method is faster)."""
    return baseline.median / method.median


# ---------------------------------------------------------------- quality
def over_seeds(measure: Callable[[int], dict], seeds) -> dict:
    """Run `measure(seed) -> {metric: value}` for every seed; returns metric -> {values, mean, std}."""
    runs = [measure(s) for s in check_seeds(seeds)]
    out = {}
    for key in runs[0]:
        values = [float(r[key]) for r in runs]
        out[key] = {"values": values, "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


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
