"""`genlab` command line: train, sample, eval, bench.

Every user mistake ends in one line `error: ...` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import GenlabError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genlab", description="Diffusers-style generative pipelines: train, sample, evaluate.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,sample,eval,bench,demo}")

    t = sub.add_parser("train", help="train a recipe (a pipeline or a tokenizer); resumes from its checkpoints",
                       description="Train one recipe with the shared Accelerate trainer. Works under "
                                   "`accelerate launch` (several processes / GPUs) as well as plain `genlab train`.")
    t.add_argument("recipe", nargs="?", help="name of a shipped recipe (see --list) or a path to a recipe YAML file")
    t.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    t.add_argument("--output-dir", help="where the trained pipeline/tokenizer is saved (default: pipelines/<recipe>)")
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

    s = sub.add_parser("sample", help="sample images from a pipeline folder into one PNG grid",
                       description="Load a pipeline folder with DiffusionPipeline.from_pretrained and write samples.")
    s.add_argument("pipeline", help="pipeline folder, e.g. pipelines/dit-digits")
    s.add_argument("--labels", nargs="+", default=None, help="class ids or class names, one image each (default: every class)")
    s.add_argument("--num-per-label", type=int, default=1, help="images per label (default 1)")
    s.add_argument("--steps", type=int, default=None, help="number of inference steps (default: the pipeline's training recipe, else 30)")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off; default: the recipe's)")
    s.add_argument("--seed", type=int, default=0, help="seed of the torch.Generator for the initial noise (default 0)")
    s.add_argument("--out", default="samples.png", help="output PNG file (a grid, one row per label) (default samples.png)")

    e = sub.add_parser("eval", help="evaluate a pipeline (class accuracy, Frechet distance) or a tokenizer (PSNR/SSIM)",
                       description="Pipelines: sample class-balanced images and score them with genlab's shipped "
                                   "classifier for the data set (class accuracy, Frechet distance on its features). "
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
                       description="ddt: DDT encoder sharing (none / uniform(r) / statdp with the same encoder budget) "
                                   "timed on one batch with CFG, deviation from unshared samples and class accuracy, "
                                   "plus DDT vs the equal-size DiT. nar: NAR vs raster AR forward passes and "
                                   "wall-clock (8x8, 16x16, 4x8x8 video) and quality over seeds. all: every "
                                   "registered bench.")
    b.add_argument("name", metavar="{ddt,nar,all}", help="which bench to run (all: every registered bench)")
    b.add_argument("--ddt", dest="ddt_path", default=None, help="DDT pipeline folder (default pipelines/ddt-digits)")
    b.add_argument("--dit", dest="dit_path", default=None, help="DiT pipeline folder (default pipelines/dit-digits)")
    b.add_argument("--ar", dest="ar_path", default=None, help="raster AR pipeline folder (default pipelines/ar-digits)")
    b.add_argument("--nar", dest="nar_path", default=None, help="NAR pipeline folder (default pipelines/nar-digits)")
    b.add_argument("--video", dest="video_path", default=None,
                   help="NAR video pipeline folder, '' to skip (default pipelines/nar-shapes-video)")
    b.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="sampling seeds of the quality runs; mean and spread are reported (nar; default 0 1 2)")
    b.add_argument("--steps", type=int, default=None, help="inference steps N (default 40)")
    b.add_argument("--batch-size", type=int, default=None, help="labels in the timed batch, CFG doubles it (default 8)")
    b.add_argument("--guidance", type=float, default=None, help="CFG scale, > 1 (default 3.0)")
    b.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="guide only for LO < t < HI (t = 0 noise; default: guide at every step)")
    b.add_argument("--rates", type=int, nargs="+", default=None,
                   help="encoder refresh rates r >= 2 (encoder every r-th step; share ratio 1 - 1/r) (default 2 4 5)")
    b.add_argument("--repeats", type=int, default=None, help="timed calls per policy, the median is reported (default 3)")
    b.add_argument("--num-samples", type=int, default=None, help="class-balanced samples for the quality metrics (default 200)")
    b.add_argument("--seed", type=int, default=None, help="seed of the noise, the same for every policy (default 0)")
    b.add_argument("--threads", type=int, default=None, help="torch threads during the bench (default 2)")
    b.add_argument("--out", default=None, help="markdown report file (default bench/<name>.md)")
    b.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of the markdown")

    d = sub.add_parser("demo", help="the Gradio web demo over every pipeline folder (needs the [demo] extra)",
                       description="Serve a Gradio app over the pipeline folders in --pipelines: pick one, generate, "
                                   "compare the method with its baseline or its acceleration switched off.")
    d.add_argument("--pipelines", default="pipelines", help="folder of pipeline folders (default pipelines)")
    d.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    return p


def cmd_train(args) -> int:
    from .training.recipe import list_recipes, load_recipe, run_recipe

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
    output_dir = args.output_dir or os.path.join("pipelines", recipe["name"])
    summary = run_recipe(recipe, output_dir, args.run_dir, resume=not args.no_resume)
    if os.environ.get("RANK", "0") == "0":
        print(f"trained {recipe['name']} for {summary.get('step')} steps; saved to {output_dir}")
    return 0


def cmd_sample(args) -> int:
    import torch

    from .pipelines.loading import sampling_defaults
    from .eval.runner import takes_steps
    from .pipelines.loading import load_pipeline
    from .utils import image_grid

    if args.num_per_label < 1:
        raise GenlabError(f"--num-per-label must be >= 1, got {args.num_per_label}")
    steps, guidance, sample = sampling_defaults(args.pipeline, args.steps, args.guidance)
    pipe = load_pipeline(args.pipeline)
    labels = args.labels or list(range(pipe.transformer.config.num_classes))
    labels = [int(x) if isinstance(x, str) and x.lstrip("-").isdigit() else x for x in labels]
    labels = [x for x in labels for _ in range(args.num_per_label)]
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    if takes_steps(pipe):
        extra["num_inference_steps"] = steps
    elif args.steps is not None:  # token AR pipelines: the step count is fixed by the model's decoding order
        raise GenlabError(f"{type(pipe).__name__} has no --steps: its number of forward passes is fixed by its order")
    images = pipe(class_labels=labels, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(args.seed), **extra).images
    image_grid(images, rows=len(labels) // args.num_per_label).save(args.out)
    print(f"wrote {len(images)} samples to {args.out}")
    return 0


def cmd_eval(args) -> int:
    from .eval.runner import evaluate_path

    result = evaluate_path(args.path, dataset=args.dataset, num_samples=args.num_samples, steps=args.steps,
                           guidance=args.guidance, seed=args.seed, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def cmd_bench(args) -> int:
    from .eval.bench import run_bench

    kwargs = {k: getattr(args, k) for k in ("ddt_path", "dit_path", "ar_path", "nar_path", "video_path", "seeds",
                                             "steps", "batch_size", "guidance", "rates",
                                             "repeats", "num_samples", "seed", "threads", "out", "guidance_interval")}
    result = run_bench(args.name, **kwargs)
    results = result if args.name == "all" else {args.name: result}
    if args.json:
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
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from .training.launch import relaunch_cpu_workers, requested_cpu_processes

        workers = requested_cpu_processes()
        if workers and workers > 1:  # `accelerate launch --cpu --num_processes N` started only this one process
            return relaunch_cpu_workers(workers, argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # "Loading pipeline components" bars; sampling keeps its own bar
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
