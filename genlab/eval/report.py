"""What every bench writes: the machine description, its markdown report, and the `genlab bench all` table and
plot (bench/results.md, bench/results.png)."""

from __future__ import annotations

import os
import platform

from ..errors import GenlabError


def load_expected(path: str, expected: str | tuple, flag: str):
    """Load the pipeline folder `path` and check it holds an `expected` pipeline class (a name or a tuple of names;
    `flag` names the argument in errors)."""
    from ..pipelines.loading import load_pipeline

    names = (expected,) if isinstance(expected, str) else tuple(expected)
    pipe = load_pipeline(path)
    if type(pipe).__name__ not in names:
        raise GenlabError(f"{flag} {path} holds a {type(pipe).__name__}, expected a {' or '.join(names)}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def machine_info(threads: int, device=None) -> dict:
    """The machine a bench ran on; with a CUDA `device`, the GPU's name and CUDA version too."""
    import torch

    info = {"torch_threads": threads, "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version()}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(m: dict) -> str:
    gpu = f"GPU: {m['gpu']} (CUDA {m['cuda']}), " if m.get("gpu") else ""
    return (f"Machine: {gpu}{m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}, torch threads: "
            f"{m['torch_threads']}, Python {m['python']}, {m['platform']}.")


def write_report(out: str | None, markdown: str):
    if not out:
        return
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(out, "w") as f:
        f.write(markdown)


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
        if "summary" not in result:  # e.g. the speed bench: no method-vs-baseline row
            continue
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


def quality_table(quality: dict, names) -> list[str]:
    """Markdown lines of the quality-over-seeds table of pipeline_quality's result for the models `names`."""
    lines = ["Quality over sampling seeds, each model with its recipe's sampling settings (mean ± standard deviation "
             "over the seeds):", "",
             "| model | pipeline | parameters | training steps | sampling | class accuracy | Fréchet distance |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        q = quality[name]
        lines.append(f"| {name} | `{q['pipeline']}` | {q['parameters']:,} | {q['training_steps']} | {q['sample']} | "
                     f"{100 * q['accuracy_mean']:.1f} ± {100 * q['accuracy_std']:.1f} % | "
                     f"{q['fd_mean']:.2f} ± {q['fd_std']:.2f} |")
    return lines
