"""`genlab bench`: run a registered bench (genlab.registry; each method declares its own in its manifest) or all of
them, each measured in one run on the same seeds and written as a markdown report; `all` also writes the
method-vs-baseline table and plot (genlab.eval.report.write_results)."""

from __future__ import annotations

from .. import registry
from ..errors import GenlabError
from .report import write_results

__all__ = ["run_bench", "write_results"]


def run_bench(name: str, **kwargs) -> dict:
    """Run the bench `name` with the keyword arguments it accepts (others and None values are ignored), or every
    registered bench for "all" (each with its default report file). Returns that bench's result, or
    {name: result} for "all"."""
    if name == "all":
        if kwargs.get("out"):
            raise GenlabError("--out names one report; with 'all' every bench writes its default bench/<name>.md")
        kwargs.pop("out", None)
        results = {n: registry.bench(n)(**kwargs) for n in registry.bench_names()}
        write_results(results)
        return results
    return registry.bench(name)(**kwargs)
