"""`genlab bench ett`: ETT against the same LM on a frozen tokenizer, measured in one run on the same seeds.

* Captioning, trained here on equal budgets for every training seed, from the shipped untuned IBQ tokenizer. Per
  seed, stage 1 (the recipe `ett-shapes-align`, `align_steps`) aligns a fresh projector and a fresh LM's inputs,
  once for code-vector inputs and once for the index-lookup baseline; then each arm trains `tune_steps` with the
  tuning recipe's optimiser from its aligned state:
  - index-frozen: the LM reads a learned embedding of the code ids; projector (embedding) + LM train, the tokenizer
    is frozen and no gradient could reach it anyway;
  - embedding-frozen: the LM reads projector(code vectors); projector + LM train, the tokenizer is frozen;
  - ETT alpha = a: stage 2, everything trains, the tokenizer included, on L_cap + a L_vq (a in `alphas`).
  Scored on held-out test images: the attribute accuracy of greedy captions (every attribute the caption names:
  shape, colour, size, position) and the reconstruction MSE / PSNR of the arm's tokenizer (the untuned one beside).
* Generation: the shipped pair (`pipelines/ett-shapes`, tokenizer tuned end to end, and `pipelines/ett-shapes-frozen`,
  the untuned one), prompted with test captions, each with its recipe's sampling settings: shape accuracy by the
  shipped shapes classifier, colour accuracy against the prompt, both right on the same sample, and Fréchet distance,
  over sampling seeds (mean ± spread).
"""

from __future__ import annotations

import os
import tempfile

from ..errors import GenlabError, check_positive_int
from .harness import (NUM_SAMPLES, OUT, REPEATS, SEEDS, THREADS, Bench, BenchArgument, BenchSummary, check_seeds, over_seeds,
                      summarize, torch_threads)
from .report import load_expected, machine_info, machine_line, write_report

ALPHAS = (0.0, 0.25, 1.0)
INDEX, EMBED = "index-frozen", "embedding-frozen"


def ett_arm(alpha: float) -> str:
    return f"ETT α={alpha:g}"


def _train(name: str, overrides: list[str], root: str) -> str:
    """Train recipe `name` with `overrides` into a fresh folder under root; returns the pipeline folder."""
    from ..training.recipe import load_recipe, run_recipe

    out = tempfile.mkdtemp(prefix=f"{name}-", dir=root)
    run_recipe(load_recipe(name, overrides), os.path.join(out, "pipeline"), os.path.join(out, "run"), resume=False)
    return os.path.join(out, "pipeline")


def train_arms(tokenizer: str, seed: int, align_steps: int, tune_steps: int, alphas, root: str,
               recipes: dict) -> dict:
    """arm name -> the pipeline folder it trained into, all arms of one training seed (see the module doc)."""
    common = [f"train.seed={seed}", f"train.checkpoint_every={max(align_steps, tune_steps)}"]
    align = common + [f"tokenizer.path={tokenizer}", f"train.steps={align_steps}"]
    tune = common + [f"train.steps={tune_steps}"]
    aligned = {"embedding": _train(recipes["align"], align, root),
               "index": _train(recipes["align"], align + ["model.visual_input=index"], root)}
    arms = {INDEX: _train(recipes["frozen"], tune + [f"init={aligned['index']}"], root),
            EMBED: _train(recipes["frozen"], tune + [f"init={aligned['embedding']}"], root)}
    for a in alphas:
        arms[ett_arm(a)] = _train(recipes["tune"], tune + [f"init={aligned['embedding']}", f"objective.alpha={a}"],
                                  root)
    return arms


def reconstruction(tokenizer, images, batch_size: int = 250) -> dict:
    """MSE and PSNR (images in [-1, 1]) of decode(encode(x)) on `images`."""
    import torch

    from .metrics import psnr

    with torch.no_grad():
        recon = torch.cat([tokenizer.decode(tokenizer.encode(images[i:i + batch_size])).clamp(-1, 1)
                           for i in range(0, len(images), batch_size)])
    return {"mse": (recon - images).pow(2).mean().item(), "psnr": psnr(recon, images)}


def caption_scores(pipe, images, attributes, batch_size: int = 250) -> dict:
    from .metrics import caption_attribute_accuracy

    captions = [c for i in range(0, len(images), batch_size) for c in pipe.caption(images[i:i + batch_size])]
    return {**caption_attribute_accuracy(captions, attributes), "examples": captions[:4]}


def generation_scores(pipe, path: str, dataset: str, num_samples: int, seed: int, classifier, reals) -> dict:
    """Shape accuracy, colour accuracy, both right on one sample, and Fréchet distance of `num_samples` samples
    prompted with the test captions."""
    import torch

    from ..pipelines.loading import sampling_defaults
    from .metrics import class_predictions, color_names, frechet_distance
    from .runner import evaluation_inputs, generate

    steps, guidance, sample = sampling_defaults(path)
    extra = {k: v for k, v in sample.items() if k not in ("num_inference_steps", "guidance_scale")}
    inputs, labels, attributes = evaluation_inputs(pipe, dataset, num_samples)
    images = generate(pipe, inputs, steps, guidance, seed, 100, **extra)
    shape_ok = class_predictions(images, classifier) == labels
    color_ok = torch.tensor([a == t["color"] for a, t in zip(color_names(images), attributes)])
    return {"shape_accuracy": shape_ok.double().mean().item(), "color_accuracy": color_ok.double().mean().item(),
            "match": (shape_ok & color_ok).double().mean().item(), "fd": frechet_distance(reals, images, classifier)}


def generation_timing(pipes: dict, paths: dict, dataset: str, batch_size: int, repeats: int) -> dict:
    """Seconds per call of every pipeline on the same `batch_size` test prompts (round-robin, median)."""
    from ..pipelines.loading import sampling_defaults
    from .harness import conditioned_call, time_round_robin

    calls = {name: conditioned_call(pipe, dataset, batch_size, sampling_defaults(paths[name])[2], 0)
             for name, pipe in pipes.items()}
    _, times = time_round_robin(calls, repeats)
    return {name: t.median for name, t in times.items()}


def bench_ett(tokenizer: str = "tokenizers/ibq-shapes", ett_path: str = "pipelines/ett-shapes",
              frozen_path: str = "pipelines/ett-shapes-frozen", align_recipe: str = "ett-shapes-align",
              tune_recipe: str = "ett-shapes-tune", frozen_recipe: str = "ett-shapes-tune-frozen",
              align_steps: int = 300, tune_steps: int = 600, alphas=ALPHAS, train_seeds=(0, 1, 2),
              num_test: int = 500, num_samples: int = 200, seeds=(0, 1, 2), batch_size: int = 16,
              repeats: int = 3, threads: int = 2,
              out: str | None = "bench/ett.md") -> dict:
    """Benchmark ETT vs the frozen tokenizer; see the module doc."""
    from ..data import load_dataset
    from ..pipelines.loading import load_pipeline, training_info
    from ..tokenizers import load_tokenizer
    from . import load_classifier, real_reference

    align_steps, tune_steps = check_positive_int(align_steps, "align_steps"), check_positive_int(tune_steps, "tune_steps")
    num_test, num_samples = check_positive_int(num_test, "num_test"), check_positive_int(num_samples, "num_samples")
    batch_size, repeats = check_positive_int(batch_size, "batch_size"), check_positive_int(repeats, "repeats")
    alphas = [float(a) for a in alphas]
    if 0.25 not in alphas or any(a < 0 for a in alphas):
        raise GenlabError(f"alphas must be >= 0 and include ETT's default 0.25, got {alphas}")
    train_seeds, seeds = check_seeds(train_seeds), check_seeds(seeds)
    if tokenizer and not os.path.isfile(os.path.join(tokenizer, "config.json")):
        raise GenlabError(f"no tokenizer folder {tokenizer} (train it: genlab train ibq-shapes --output-dir {tokenizer})")
    if bool(ett_path) != bool(frozen_path):
        raise GenlabError("give both --ett and --frozen pipelines for the generation runs, or neither ('')")
    arguments = dict(tokenizer=tokenizer, ett_path=ett_path, frozen_path=frozen_path, align_recipe=align_recipe,
                     tune_recipe=tune_recipe, frozen_recipe=frozen_recipe, align_steps=align_steps,
                     tune_steps=tune_steps, alphas=alphas, train_seeds=train_seeds, num_test=num_test,
                     num_samples=num_samples, seeds=seeds, batch_size=batch_size, repeats=repeats, threads=threads,
                     out=out)
    recipes = {"align": align_recipe, "tune": tune_recipe, "frozen": frozen_recipe}
    arms = [INDEX, EMBED, *(ett_arm(a) for a in alphas)]
    with torch_threads(threads):
        captioning, untuned = None, None
        if tokenizer:
            dataset = training_info(tokenizer).get("dataset") or "shapes"
            test = load_dataset(dataset, "test")
            images, attributes = test.images[:num_test], test.attributes[:num_test]
            untuned = reconstruction(load_tokenizer(tokenizer).eval(), images)
            runs = {arm: [] for arm in arms}
            with tempfile.TemporaryDirectory(prefix="bench-ett-") as root:
                for s in train_seeds:
                    for arm, path in train_arms(tokenizer, s, align_steps, tune_steps, alphas, root, recipes).items():
                        pipe = load_pipeline(path)
                        runs[arm].append({**caption_scores(pipe, images, attributes),
                                          **reconstruction(pipe.image_tokenizer.eval(), images)})
            captioning = {arm: {**summarize([{k: v for k, v in r.items() if k != "examples"} for r in rows]),
                                "examples": rows[0]["examples"]} for arm, rows in runs.items()}
        generation, timing = None, None
        if ett_path:
            paths = {"ETT (tuned)": ett_path, "frozen": frozen_path}
            pipes = {name: load_expected(p, "ETTPipeline", flag) for (name, p), flag in zip(paths.items(),
                                                                                               ("--ett", "--frozen"))}
            dataset = training_info(ett_path).get("dataset") or "shapes"
            classifier, reals = load_classifier(dataset), real_reference(dataset, "test")
            generation = {name: {"pipeline": paths[name], **over_seeds(
                lambda s, name=name: generation_scores(pipes[name], paths[name], dataset, num_samples, s, classifier,
                                                       reals), seeds)} for name in pipes}
            timing = generation_timing(pipes, paths, dataset, batch_size, repeats)

    verdict = {}
    if captioning:
        ett, index = captioning[ett_arm(0.25)], captioning[INDEX]
        verdict["caption_gain_points"] = 100 * (ett["mean"]["mean"] - index["mean"]["mean"])
        verdict["caption_2_points_over_index"] = verdict["caption_gain_points"] >= 2
        verdict["mse_ratio_alpha_0.25"] = ett["mse"]["mean"] / untuned["mse"]
        verdict["mse_within_1.5x"] = verdict["mse_ratio_alpha_0.25"] <= 1.5
        if 0.0 in alphas:
            verdict["mse_ratio_alpha_0"] = captioning[ett_arm(0.0)]["mse"]["mean"] / untuned["mse"]
    if generation:
        verdict["generation_match_70"] = generation["ETT (tuned)"]["match"]["mean"] >= 0.70
    command = BENCH.command(arguments)
    result = {"bench": "ett", "command": command, "arguments": arguments, "machine": machine_info(threads),
              "untuned": untuned, "captioning": captioning, "generation": generation, "seconds": timing,
              "verdict": verdict}
    if generation:
        t, f = generation["ETT (tuned)"], generation["frozen"]
        result["summary"] = BenchSummary(
            method="ETT (tokenizer tuned end to end with the LM)", baseline="the same LM on the frozen tokenizer",
            dataset=dataset, speed_ratio=timing["frozen"] / timing["ETT (tuned)"],
            method_quality={"class_accuracy": t["shape_accuracy"]["mean"], "frechet_distance": t["fd"]["mean"]},
            baseline_quality={"class_accuracy": f["shape_accuracy"]["mean"], "frechet_distance": f["fd"]["mean"]},
            command=command, extra={"caption_gain_points": verdict.get("caption_gain_points")}).to_dict()
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _pm(stat: dict, scale: float = 1.0, digits: int = 1) -> str:
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def _markdown(r: dict) -> str:
    a, v = r["arguments"], r["verdict"]
    lines = ["# ETT bench: the tokenizer tuned end to end with the LM vs the same LM on a frozen tokenizer", "",
             f"Command: `{r['command']}`", "", machine_line(r["machine"]), ""]
    if r["captioning"]:
        keys = [k for k in r["captioning"][INDEX] if k not in ("examples", "mse", "psnr", "mean")]
        lines += [(f"Captioning, trained in this run: per training seed ({', '.join(map(str, a['train_seeds']))}), "
                   f"stage 1 ({a['align_recipe']}, {a['align_steps']} steps) from `{a['tokenizer']}`, then "
                   f"{a['tune_steps']} steps per arm ({a['tune_recipe']} / {a['frozen_recipe']}); greedy captions "
                   f"of {a['num_test']} held-out test images, attribute accuracy in % (mean ± spread over the "
                   f"training seeds); reconstruction of the same images by the arm's tokenizer (untuned: MSE "
                   f"{r['untuned']['mse']:.4f}, PSNR {r['untuned']['psnr']:.2f} dB)."), "",
                  "| arm | " + " | ".join(keys) + " | mean | recon MSE | MSE / untuned | PSNR dB | example caption |",
                  "|---|" + "---|" * (len(keys) + 5)]
        for arm, s in r["captioning"].items():
            lines.append(f"| {arm} | " + " | ".join(_pm(s[k], 100) for k in keys) + f" | **{_pm(s['mean'], 100)}** | "
                         f"{_pm(s['mse'], 1, 4)} | {s['mse']['mean'] / r['untuned']['mse']:.2f}× | "
                         f"{_pm(s['psnr'], 1, 2)} | {s['examples'][0]} |")
        lines += ["", (f"ETT α=0.25 over index-frozen: {v['caption_gain_points']:+.1f} points "
                       f"(goal ≥ +2: {'met' if v['caption_2_points_over_index'] else 'not met'}); its reconstruction "
                       f"MSE is {v['mse_ratio_alpha_0.25']:.2f}× the untuned tokenizer's (goal ≤ 1.5×: "
                       f"{'met' if v['mse_within_1.5x'] else 'not met'})"
                       + (f"; α=0 (no tokenizer loss): {v['mse_ratio_alpha_0']:.2f}×." if "mse_ratio_alpha_0" in v
                          else ".")), ""]
    if r["generation"]:
        lines += [(f"Generation: the shipped pipelines, {a['num_samples']} samples per sampling seed "
                   f"({', '.join(map(str, a['seeds']))}) prompted with test captions; shape by the shipped shapes "
                   "classifier, colour against the prompt (mean ± spread over the seeds)."), "",
                  "| model | pipeline | shape accuracy | colour accuracy | shape and colour | Fréchet distance |",
                  "|---|---|---|---|---|---|"]
        for name, g in r["generation"].items():
            lines.append(f"| {name} | `{g['pipeline']}` | {_pm(g['shape_accuracy'], 100)} % | "
                         f"{_pm(g['color_accuracy'], 100)} % | {_pm(g['match'], 100)} % | {_pm(g['fd'], 1, 2)} |")
        sec = r["seconds"]
        lines += ["", (f"Sampling time at batch {a['batch_size']} (median of {a['repeats']}, round-robin): tuned "
                       f"{sec['ETT (tuned)']:.3f} s, frozen {sec['frozen']:.3f} s (the same LM and code grid)."),
                  "", (f"Tuned pipeline: shape and colour both right in "
                       f"{100 * r['generation']['ETT (tuned)']['match']['mean']:.1f} % of samples (goal ≥ 70 %: "
                       f"{'met' if v['generation_match_70'] else 'not met'})."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "ett", bench_ett,
    "ETT vs a frozen tokenizer: caption attribute accuracy of index-frozen, embedding-frozen and ETT arms (alpha "
    "0 / 0.25 / 1) trained in the run over training seeds, their tokenizers' reconstruction, and generation "
    "accuracy / Fréchet distance of the shipped pair over sampling seeds.",
    arguments=(
        BenchArgument("--tokenizer", "tokenizer", "the untuned IBQ tokenizer folder the arms start from ('': no "
                      "captioning arms)"),
        BenchArgument("--ett", "ett_path", "the tuned ETT pipeline folder ('' with --frozen '': no generation runs)"),
        BenchArgument("--frozen", "frozen_path", "the frozen-tokenizer baseline pipeline folder"),
        BenchArgument("--align-recipe", "align_recipe", "stage-1 recipe of the arms"),
        BenchArgument("--tune-recipe", "tune_recipe", "stage-2 (end-to-end) recipe of the ETT arms"),
        BenchArgument("--frozen-recipe", "frozen_recipe", "frozen-tokenizer recipe of the index/embedding arms"),
        BenchArgument("--align-steps", "align_steps", "stage-1 steps per arm", int),
        BenchArgument("--tune-steps", "tune_steps", "steps of every arm after stage 1", int),
        BenchArgument("--alphas", "alphas", "weights of the tokenizer loss of the ETT arms", float, "+"),
        BenchArgument("--train-seeds", "train_seeds", "training seeds of the arms (mean and spread reported)", int,
                      "+"),
        BenchArgument("--num-test", "num_test", "held-out images captioned and reconstructed", int),
        NUM_SAMPLES,
        SEEDS,
        BenchArgument("--batch-size", "batch_size", "prompts per timed generation call", int),
        REPEATS,
        THREADS,
        OUT,
    ),
)
