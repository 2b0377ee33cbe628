"""`genlab` command line: train, sample, eval, bench, demo.

Every user mistake ends in one line `error: ...` on stderr and exit status 2, never a traceback. Nothing heavy is
imported before the arguments are parsed, so `--help` and argument errors answer at once. The commands know no
method: recipes, benches and pipelines come from `genlab.registry`, and what a pipeline takes from its signature.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import GenlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".gif", ".mp4")


def _bench_epilog() -> str:
    from . import registry

    lines = ["benches (flags after the name; `genlab bench NAME --help` for the details):"]
    for name in registry.bench_names():
        bench = registry.bench(name)
        lines.append(f"  {name}: {bench.description}")
        lines.append("      flags: " + " ".join(a.flag for a in bench.arguments) + " --json")
    lines.append("  all: every bench above with its defaults (the flags above are passed to the benches that "
                 "take them); writes bench/results.md and bench/results.png")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genlab", description="Diffusers-style generative pipelines: train, sample, evaluate.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,sample,eval,bench,demo}")

    t = sub.add_parser("train", help="train a recipe (a pipeline or a tokenizer); resumes from its checkpoints",
                       description="Train one recipe with the shared Accelerate trainer. Works under "
                                   "`accelerate launch` (several processes / GPUs) as well as plain `genlab train`.")
    t.add_argument("recipe", nargs="?", help="name of a shipped recipe (see --list) or a path to a recipe YAML file")
    t.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    t.add_argument("--output-dir", help="where the trained pipeline/tokenizer is saved (default: <run-dir>/pipeline)")
    t.add_argument("--overwrite", action="store_true",
                   help="allow --output-dir to replace a folder that holds another trained model")
    t.add_argument("--run-dir", help="checkpoints, train_log.jsonl and sample grids (default: runs/<recipe>)")
    t.add_argument("--steps", type=int, help="override train.steps: number of optimizer steps")
    t.add_argument("--batch-size", type=int, help="override train.batch_size (per process)")
    t.add_argument("--lr", type=float, help="override train.lr")
    t.add_argument("--seed", type=int, help="override train.seed (all randomness derives from it)")
    t.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="override train.mixed_precision")
    t.add_argument("--checkpoint-every", type=int, help="override train.checkpoint_every (steps)")
    t.add_argument("--data", help="override data.name (fashion, digits, shapes, imagefolder)")
    t.add_argument("--data-root", help="override data.root (e.g. your image folder for imagefolder)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any recipe entry, e.g. --set model.depth=4 (repeatable; value parsed as YAML)")
    t.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --run-dir and start fresh")

    s = sub.add_parser("sample", help="sample from a pipeline folder: an image grid, or a GIF/MP4 for video",
                       description="Load a pipeline folder with DiffusionPipeline.from_pretrained and write samples: "
                                   "one row per label or prompt; video pipelines write the clips side by side.")
    s.add_argument("pipeline", help="pipeline folder, e.g. pipelines/dit-digits")
    s.add_argument("--labels", nargs="+", default=None,
                   help="class ids or class names, one sample each (class-conditional pipelines; default: every class)")
    s.add_argument("--prompt", nargs="+", default=None, help="one or more prompts (text-conditioned pipelines)")
    s.add_argument("--num-per-label", type=int, default=1, help="samples per label or prompt (default 1)")
    s.add_argument("--steps", type=int, default=None, help="number of inference steps (default: the pipeline's training recipe, else 30)")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off; default: the recipe's)")
    s.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator for the initial noise (default 0)")
    s.add_argument("--size", type=int, default=256,
                   help="show each sample at least this many pixels tall (nearest-neighbour, whole factors; "
                        "0 = native size) (default 256)")
    s.add_argument("--out", default="samples.png",
                   help="output file: .png/.jpg for images, .gif/.mp4 for video pipelines (default samples.png; "
                        "samples.gif for video)")
    s.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="fp32, or bf16 autocast of the matmuls and convolutions (faster on CPUs with bf16 units; "
                        "samples change by the rounding) (default fp32)")
    s.add_argument("--compile", action="store_true",
                   help="torch.compile the networks' repeated blocks first (the first call compiles: minutes on "
                        "a CPU; pays off for many samples)")

    e = sub.add_parser("eval", help="evaluate a pipeline (class accuracy, Frechet distance) or a tokenizer (PSNR/SSIM)",
                       description="Pipelines: sample class-balanced images (or prompt with the test captions) and "
                                   "score them with genlab's shipped classifier for the data set (class accuracy, "
                                   "Frechet distance on its features, colour accuracy where captions name colours). "
                                   "Tokenizers: reconstruction PSNR and SSIM on the test split.")
    e.add_argument("path", help="a pipeline folder (model_index.json) or a tokenizer folder (config.json)")
    e.add_argument("--dataset", help="data set to compare with (default: the one it was trained on, from training_info.json)")
    e.add_argument("--num-samples", type=int, default=200, help="generated images, class-balanced (default 200)")
    e.add_argument("--steps", type=int, default=None, help="inference steps (default: the recipe's, else 30)")
    e.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the recipe's)")
    e.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    e.add_argument("--batch-size", type=int, default=100, help="images generated per pipeline call (default 100)")
    e.add_argument("--json", action="store_true", help="print the result as one JSON object")

    b = sub.add_parser("bench", help="measured speed/quality benchmarks in one run on the same seeds (markdown report)",
                       description="Run one registered bench (or all of them); each writes a markdown report with "
                                   "the command and machine, and `all` the method-vs-baseline table.",
                       epilog=_bench_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("name", help="which bench to run (see below), or all")
    b.add_argument("flags", nargs=argparse.REMAINDER, help="the bench's own flags (see below)")

    d = sub.add_parser("demo", help="the Gradio web demo over every pipeline folder (needs the [demo] extra)",
                       description="Serve a Gradio app over the pipeline folders in --pipelines: pick one, generate, "
                                   "compare the method with its baseline or its acceleration switched off.")
    d.add_argument("--pipelines", default="pipelines", help="folder of pipeline folders (default pipelines)")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    return p


def bench_parser(name: str) -> argparse.ArgumentParser:
    """The flags of `genlab bench NAME` (for "all": every bench's flags), from the benches' declarations."""
    from . import registry

    names = registry.bench_names() if name == "all" else [name]
    benches = [registry.bench(n) for n in names]  # an unknown name is a GenlabError here
    description = benches[0].description if name != "all" else "Every registered bench, with its defaults."
    p = argparse.ArgumentParser(prog=f"genlab bench {name}", description=description)
    seen: set = set()
    for bench in benches:
        bench.add_arguments(p, seen)
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of the markdown")
    return p


# ---------------------------------------------------------------- commands
def _quiet_loading() -> None:
    """No "Loading pipeline components" bars from diffusers (sampling keeps its own progress bar)."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def cmd_train(args) -> int:
    from .training.recipe import check_output_dir, list_recipes, load_recipe, run_recipe

    if args.list or not args.recipe:
        print("\n".join(list_recipes()))
        return 0
    overrides = list(args.overrides)
    for flag, key in [("steps", "train.steps"), ("batch_size", "train.batch_size"), ("lr", "train.lr"),
                      ("seed", "train.seed"), ("mixed_precision", "train.mixed_precision"),
                      ("checkpoint_every", "train.checkpoint_every"), ("data", "data.name"), ("data_root", "data.root")]:
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    recipe = load_recipe(args.recipe, overrides)
    _quiet_loading()
    run_dir = args.run_dir or os.path.join("runs", recipe["name"])
    output_dir = args.output_dir or os.path.join(run_dir, "pipeline")
    check_output_dir(output_dir, run_dir, overwrite=args.overwrite)
    summary = run_recipe(recipe, output_dir, run_dir, resume=not args.no_resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {recipe['name']} for {summary.get('step')} steps; saved to {output_dir}")
    return 0


def _check_out_file(path: str, suffixes: tuple) -> None:
    """Refuse an output path before any work is done: wrong suffix, missing folder, or a folder in the way."""
    if not str(path).lower().endswith(suffixes):
        raise GenlabError(f"--out {path}: give a file ending in {', '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GenlabError(f"--out {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise GenlabError(f"--out {path} is a folder; give a file name")


def cmd_sample(args) -> int:
    import torch

    from .pipelines.loading import accepted, is_video_pipeline, load_pipeline, sampling_defaults, takes_steps
    from .pipelines.sampling_modes import compile_pipeline, sampling_precision
    from .utils import image_grid, save_video, upscale_to_height, video_grid

    if args.num_per_label < 1:
        raise GenlabError(f"--num-per-label must be >= 1, got {args.num_per_label}")
    if args.size < 0:
        raise GenlabError(f"--size must be >= 0, got {args.size}")
    steps, guidance, sample = sampling_defaults(args.pipeline, args.steps, args.guidance)
    _quiet_loading()
    pipe = load_pipeline(args.pipeline)
    video = is_video_pipeline(pipe)
    out = "samples.gif" if video and args.out == "samples.png" else args.out
    _check_out_file(out, VIDEO_SUFFIXES if video else IMAGE_SUFFIXES)
    if args.steps is not None and not takes_steps(pipe):
        raise GenlabError(f"{type(pipe).__name__} has no --steps: its number of forward passes is fixed by its order")

    conditioning = pipe.conditioning_inputs()
    for flag, name in (("labels", "class_labels"), ("prompt", "prompt")):
        if getattr(args, flag) is not None and name not in conditioning:
            raise GenlabError(f"{type(pipe).__name__} takes no --{flag} (it is conditioned on "
                              f"{', '.join(conditioning) or 'nothing'})")
    inputs = {}
    if "prompt" in conditioning:
        if not args.prompt:
            raise GenlabError(f"{type(pipe).__name__} is text-conditioned: pass --prompt TEXT [TEXT ...]")
        inputs["prompt"] = args.prompt
    if "class_labels" in conditioning and (args.labels or "prompt" not in inputs):
        labels = args.labels or list(range(pipe.num_classes))
        inputs["class_labels"] = [int(x) if isinstance(x, str) and x.lstrip("-").isdigit() else x for x in labels]
    rows = max(len(v) for v in inputs.values())
    inputs = {k: [x for x in v for _ in range(args.num_per_label)] for k, v in inputs.items()}
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    call = accepted(pipe, {"num_inference_steps": steps, "guidance_scale": guidance, **extra})
    if args.compile:
        compile_pipeline(pipe)
    with sampling_precision(pipe, args.precision):
        result = pipe(**inputs, generator=torch.Generator().manual_seed(args.seed), **call)
    if video:
        frames = video_grid([list(clip) for clip in result.frames], rows=rows)
        frames = [upscale_to_height(f, args.size * rows) if args.size else f for f in frames]
        save_video(frames, out)
        print(f"wrote {len(result.frames)} clips to {out}")
    else:
        grid = image_grid(result.images, rows=rows)
        (upscale_to_height(grid, args.size * rows) if args.size else grid).save(out)
        print(f"wrote {len(result.images)} samples to {out}")
    return 0


def cmd_eval(args) -> int:
    from .eval.runner import evaluate_path

    _quiet_loading()
    result = evaluate_path(args.path, dataset=args.dataset, num_samples=args.num_samples, steps=args.steps,
                           guidance=args.guidance, seed=args.seed, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def cmd_bench(args) -> int:
    flags = bench_parser(args.name).parse_args(args.flags)
    from .eval.bench import run_bench

    _quiet_loading()
    kwargs = {k: v for k, v in vars(flags).items() if k != "json"}
    result = run_bench(args.name, **kwargs)
    results = result if args.name == "all" else {args.name: result}
    if flags.json:
        print(json.dumps({n: {k: v for k, v in r.items() if k != "markdown"} for n, r in results.items()},
                         default=str))
    else:
        for r in results.values():
            print(r["markdown"])
    return 0


def cmd_demo(args) -> int:
    try:
        from .demo import launch
    except ImportError as e:
        raise GenlabError(f"the demo needs gradio: pip install -e '.[demo]' ({e})") from None
    if not os.path.isdir(args.pipelines):
        raise GenlabError(f"no pipelines folder at {args.pipelines}")
    launch(pipelines_dir=args.pipelines, host=args.host, port=args.port)
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "bench": cmd_bench, "demo": cmd_demo}


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # genlab never downloads; fail fast instead of retrying the hub
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except GenlabError as e:  # a broken plug-in named in GENLAB_PLUGINS
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "train":
        from .training.launch import relaunch_cpu_workers, requested_cpu_processes

        workers = requested_cpu_processes()
        if workers and workers > 1:  # `accelerate launch --cpu --num_processes N` started only this one process
            return relaunch_cpu_workers(workers, argv)
    try:
        return COMMANDS[args.command](args)
    except GenlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
