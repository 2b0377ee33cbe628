"""`genlab bench nar`: NAR's next-neighbour decoding against raster AR, in one run on the same seeds and batch.

- speed: forward passes and wall-clock of KV-cached raster AR vs NAR on an 8x8 grid (the trained ar-digits and
  nar-digits pipelines, tokenizer decode included) and on a 16x16 grid and a 4x8x8 clip (the same architectures
  built for that grid with fresh weights: sampling cost does not depend on the weights, so this times the method,
  not a model we trained). Both samplers are timed round-robin, median of `repeats`, with CFG on, at the batch
  size (throughput) and at batch 1 and 4 (latency: NAR's claim is about sequential steps, which a user waiting for
  one image feels).
- quality: class accuracy and the classifier Fréchet distance of both trained image pipelines over several
  sampling seeds (mean and spread), and the verdict "NAR not worse than AR beyond the spread".
- video: the trained nar-shapes-video pipeline's forward passes and wall-clock for its 4x8x8 clips.
"""

from __future__ import annotations

from ..errors import GenlabError, check_positive_int
from .harness import (NUM_SAMPLES, OUT, REPEATS, SEEDS, THREADS, Bench, BenchArgument, BenchSummary, check_seed, check_seeds,
                      over_seeds, ratio, time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, write_report

LATENCY_BATCHES = (1, 4)


def _with_grid(model, grid):
    """The same architecture as `model` (AR or NAR) for another token grid, fresh weights, eval mode."""
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    config["grid_size"] = list(grid)
    if len(grid) == 3 and config.get("pos_embed") == "rope" and \
            (config["hidden_size"] // config["num_heads"]) % 6:
        config["pos_embed"] = "learned"  # 3-D RoPE needs head_dim % 6 == 0; the video models use a learned PE
    return type(model).from_config(config).eval()


def _video_quality(pipe, dataset: str, guidance: float, num_samples: int, seeds) -> dict:
    """Frame shape accuracy and motion consistency of the pipeline's clips over `seeds` (class-balanced), and the
    same measures on real test clips of the data set as the reference."""

    from ..data import load_dataset
    from . import class_accuracy, load_classifier
    from .runner import generate_balanced
    from .video import motion_consistency, shapes_step_range

    classifier = load_classifier(dataset)
    k = pipe.transformer.config.num_classes
    frames_per_clip = pipe.num_frames
    real = load_dataset(dataset, split="test", video=True, num_frames=frames_per_clip)
    step_range = shapes_step_range(real.image_size)

    def scores(clips, labels):
        frame_labels = labels.repeat_interleave(clips.shape[1])
        return {"frame_accuracy": class_accuracy(clips.flatten(0, 1), frame_labels, classifier),
                "motion_consistency": motion_consistency(clips, step_range)}

    def measure(s):
        clips, labels = generate_balanced(pipe, k, num_samples, 0, guidance, s, 100)
        return scores(clips, labels)

    generated = over_seeds(measure, seeds)
    real_clips = real.videos.float() / 127.5 - 1 if not real.videos.is_floating_point() else real.videos
    reference = scores(real_clips[:num_samples], real.labels[:num_samples])
    return {"frame_accuracy": generated["frame_accuracy"]["mean"],
            "frame_accuracy_std": generated["frame_accuracy"]["std"],
            "motion_consistency": generated["motion_consistency"]["mean"],
            "motion_consistency_std": generated["motion_consistency"]["std"],
            "real_frame_accuracy": reference["frame_accuracy"], "real_motion_consistency": reference["motion_consistency"],
            "quality_samples": num_samples, "quality_seeds": list(seeds)}


def _token_sampler(model, labels, guidance, seed):
    import torch

    from ..models import generate_tokens

    def run():
        return generate_tokens(model, labels, guidance, generator=torch.Generator().manual_seed(seed)).num_forward
    return run


def _pipe_sampler(pipe, labels, guidance, seed):
    import torch

    def run():
        pipe(class_labels=labels, guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
             output_type="pt")
        return pipe.last_num_forward
    return run


def bench_nar(ar_path: str = "pipelines/ar-digits", nar_path: str = "pipelines/nar-digits",
              video_path: str | None = "pipelines/nar-shapes-video", batch_size: int = 32, repeats: int = 3,
              num_samples: int = 200, seeds=(0, 1, 2), threads: int = 2, out: str | None = "bench/nar.md",
              seed: int = 0) -> dict:
    """Benchmark NAR vs raster AR (speed at 8x8, 16x16 and a 4x8x8 clip; quality over `seeds`); see the module doc.

    `seed` seeds the timed calls; `seeds` are the sampling seeds of the quality runs (num_samples class-balanced
    samples each). `video_path=None` (or "") skips the trained video pipeline."""
    import torch

    from ..modeling import count_parameters
    from ..pipelines.loading import sampling_defaults, training_info
    from . import class_accuracy, frechet_distance, load_classifier, real_reference
    from .runner import generate_balanced

    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_seed(seed)
    seeds = check_seeds(seeds)
    arguments = dict(ar_path=ar_path, nar_path=nar_path, video_path=video_path or "", batch_size=batch_size,
                     repeats=repeats, num_samples=num_samples, seeds=seeds, seed=seed, threads=threads, out=out)

    with torch_threads(threads):
        ar = load_expected(ar_path, "ARPipeline", "--ar")
        nar = load_expected(nar_path, "NARPipeline", "--nar")
        info = training_info(nar_path)
        dataset = info.get("dataset")
        if dataset is None or training_info(ar_path).get("dataset") != dataset:
            raise GenlabError(f"{ar_path} and {nar_path} must both have a training_info.json naming the same data set")
        _, guidance, _ = sampling_defaults(nar_path)
        num_classes = nar.transformer.config.num_classes

        # ---- speed: trained 8x8 pipelines, then the same architectures at 16x16 and on a 4x8x8 clip, at the
        # throughput batch and at the latency batches
        speed, latency = [], []
        trained, fresh = "trained pipelines", "same architecture, fresh weights"
        for source, grid in [(trained, tuple(nar.transformer.grid)), (fresh, (16, 16)), (fresh, (4, 8, 8))]:
            if source == trained:
                models = {"AR": ar, "NAR": nar}
            else:
                models = {"AR": _with_grid(ar.transformer, grid), "NAR": _with_grid(nar.transformer, grid)}
            for batch in (batch_size, *LATENCY_BATCHES):
                labels = torch.arange(batch) % num_classes
                if source == trained:
                    samplers = {n: _pipe_sampler(m, labels.tolist(), guidance, seed) for n, m in models.items()}
                else:
                    samplers = {n: _token_sampler(m, labels, guidance, seed) for n, m in models.items()}
                forwards, timing = time_round_robin(samplers, repeats)
                row = {"grid": "x".join(map(str, grid)), "source": source, "batch_size": batch, "seed": seed,
                       "guidance": guidance, "ar_times": timing["AR"].seconds, "nar_times": timing["NAR"].seconds,
                       "ar_forward": forwards["AR"], "nar_forward": forwards["NAR"],
                       "ar_seconds": timing["AR"].median, "nar_seconds": timing["NAR"].median,
                       "ar_spread": timing["AR"].spread, "nar_spread": timing["NAR"].spread,
                       "speedup": ratio(timing["AR"], timing["NAR"])}
                (speed if batch == batch_size else latency).append(row)

        # ---- the trained video pipeline
        video = None
        if video_path:
            vid = load_expected(video_path, "NARVideoPipeline", "--video")
            _, vguidance, _ = sampling_defaults(video_path)
            vlabels = (torch.arange(batch_size) % vid.transformer.config.num_classes).tolist()
            forwards, timing = time_round_robin({"NAR": _pipe_sampler(vid, vlabels, vguidance, seed)}, repeats)
            video = {"pipeline": video_path, "grid": "x".join(map(str, vid.transformer.grid)),
                     "forward": forwards["NAR"], "seconds": timing["NAR"].median, "batch_size": batch_size,
                     "guidance": vguidance, "tokens": vid.transformer.num_tokens, "frame_accuracy": None}
            vdata = training_info(video_path).get("dataset")
            if vdata:  # every frame scored by the data set's classifier against the clip's class; motion tracked
                video.update(_video_quality(vid, vdata, vguidance, num_samples, seeds))

        # ---- quality over sampling seeds
        classifier = load_classifier(dataset)
        reals = real_reference(dataset, "test")
        quality = {}
        for name, pipe, path in [("AR", ar, ar_path), ("NAR", nar, nar_path)]:
            _, g, sample = sampling_defaults(path)
            extra = {k: v for k, v in sample.items() if k != "guidance_scale"}

            def measure(s, pipe=pipe, g=g, extra=extra):
                images, sample_labels = generate_balanced(pipe, num_classes, num_samples, 0, g, s, 100, **extra)
                return {"accuracy": class_accuracy(images, sample_labels, classifier),
                        "fd": frechet_distance(reals, images, classifier)}

            q = over_seeds(measure, seeds)
            quality[name] = {"pipeline": path, "parameters": count_parameters(pipe.transformer),
                             "training_steps": training_info(path).get("steps"), "guidance": g,
                             "sample": {"guidance_scale": g, **extra}, "num_samples": num_samples, "seeds": seeds}
            for key in ("accuracy", "fd"):
                quality[name].update({key: q[key]["values"], f"{key}_mean": q[key]["mean"],
                                      f"{key}_std": q[key]["std"]})

    a, n = quality["AR"], quality["NAR"]
    spread_acc = max(a["accuracy_std"], n["accuracy_std"])
    spread_fd = max(a["fd_std"], n["fd_std"])
    verdict = {"accuracy_not_worse": n["accuracy_mean"] >= a["accuracy_mean"] - spread_acc,
               "fd_not_worse": n["fd_mean"] <= a["fd_mean"] + spread_fd,
               "same_sampling": a["sample"] == n["sample"]}

    command = BENCH.command(arguments)
    result = {"bench": "nar", "command": command, "arguments": arguments, "machine": machine_info(threads),
              "dataset": dataset, "batch_size": batch_size, "guidance": guidance, "repeats": repeats,
              "num_samples": num_samples, "seeds": seeds, "speed": speed, "latency": latency, "video": video,
              "quality": quality, "verdict": verdict}
    eight = speed[0]
    result["summary"] = BenchSummary(
        method=f"NAR ({eight['nar_forward']} forward passes at {eight['grid']})",
        baseline=f"raster AR ({eight['ar_forward']} passes)", dataset=dataset, speed_ratio=eight["speedup"],
        method_quality={"class_accuracy": n["accuracy_mean"], "frechet_distance": n["fd_mean"]},
        baseline_quality={"class_accuracy": a["accuracy_mean"], "frechet_distance": a["fd_mean"]},
        command=command).to_dict()
    result["markdown"] = _nar_markdown(result)
    write_report(out, result["markdown"])
    return result


def _nar_markdown(r: dict) -> str:
    lines = ["# NAR bench: next-neighbour rings vs raster AR", "", f"Command: `{r['command']}`", "",
             machine_line(r["machine"]), "",
             (f"Speed: batch {r['batch_size']} labels with CFG {r['guidance']:g} (the batch is doubled), KV cache on "
              f"for both, median of {r['repeats']} calls after one warm-up, AR and NAR timed round-robin. The "
              "8x8 row times the trained pipelines including the VQ decode; the other rows build the same "
              "architectures for that grid with fresh weights (sampling cost does not depend on the weights)."), "",
             "| grid | models | AR forward passes | NAR forward passes | AR s | NAR s | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for s in r["speed"]:
        lines.append(f"| {s['grid']} | {s['source']} | {s['ar_forward']} | {s['nar_forward']} | "
                     f"{s['ar_seconds']:.3f} | {s['nar_seconds']:.3f} | {s['speedup']:.2f}× |")
    lines += ["", ("Latency: the same samplers at batch " + " and ".join(map(str, LATENCY_BATCHES)) +
                   " (CFG doubles it), timed round-robin in the same run."), "",
              "| grid | batch | AR s | NAR s | speed-up |", "|---|---|---|---|---|"]
    for s in r["latency"]:
        lines.append(f"| {s['grid']} | {s['batch_size']} | {s['ar_seconds']:.4f} | {s['nar_seconds']:.4f} | "
                     f"{s['speedup']:.2f}× |")
    v = r["video"]
    if v:
        lines += ["", (f"Trained video pipeline `{v['pipeline']}`: {v['grid']} token grid ({v['tokens']} tokens), "
                       f"{v['forward']} forward passes, {v['seconds']:.3f} s for {v['batch_size']} clips "
                       f"(CFG {v['guidance']:g}, VQ decode of every frame included)."
                       )]
        if v.get("frame_accuracy") is not None:
            lines += ["", (f"Video quality over sampling seeds {', '.join(map(str, v['quality_seeds']))} "
                           f"({v['quality_samples']} class-balanced clips each), against {v['quality_samples']} real "
                           "test clips: frame shape accuracy = the shapes classifier's accuracy on every frame against "
                           "the clip's class; motion consistency = the fraction of clips whose tracked centroid is "
                           "visible in every frame, steps as far per frame as the data's shapes move (±50 %) and "
                           "keeps its direction (cos >= 0.5)."), "",
                      "| clips | frame shape accuracy | motion consistency |", "|---|---|---|",
                      (f"| generated | {100 * v['frame_accuracy']:.1f} ± {100 * v['frame_accuracy_std']:.1f} % | "
                       f"{100 * v['motion_consistency']:.1f} ± {100 * v['motion_consistency_std']:.1f} % |"),
                      (f"| real | {100 * v['real_frame_accuracy']:.1f} % | "
                       f"{100 * v['real_motion_consistency']:.1f} % |")]
    lines += ["", (f"Quality on {r['dataset']}: {r['num_samples']} class-balanced samples per sampling seed "
                   f"{', '.join(map(str, r['seeds']))}, each pipeline's recipe guidance; mean ± standard deviation "
                   "over the seeds (one trained model each)."), "",
              "| model | pipeline | parameters | training steps | CFG | class accuracy | Fréchet distance |",
              "|---|---|---|---|---|---|---|"]
    for name, q in r["quality"].items():
        lines.append(f"| {name} | `{q['pipeline']}` | {q['parameters']:,} | {q['training_steps']} | {q['guidance']:g} | "
                     f"{100 * q['accuracy_mean']:.1f} ± {100 * q['accuracy_std']:.1f} % | "
                     f"{q['fd_mean']:.2f} ± {q['fd_std']:.2f} |")
    verdict = r["verdict"]
    if not verdict["same_sampling"]:
        lines += ["", (f"**Note: the two pipelines sample with different settings (AR {r['quality']['AR']['sample']}, "
                       f"NAR {r['quality']['NAR']['sample']}): the comparison is not like for like.**")]
    lines += ["", (f"NAR not worse than AR beyond the spread: class accuracy {'yes' if verdict['accuracy_not_worse'] else 'NO'}"
                   f", Fréchet distance {'yes' if verdict['fd_not_worse'] else 'NO'}."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "nar", bench_nar,
    "NAR vs raster AR: forward passes and wall-clock (8x8, 16x16, 4x8x8 video) at the throughput batch and at "
    "batch 1 and 4, and quality over sampling seeds.",
    arguments=(
        BenchArgument("--ar", "ar_path", "raster AR pipeline folder (the baseline)"),
        BenchArgument("--nar", "nar_path", "NAR pipeline folder"),
        BenchArgument("--video", "video_path", "NAR video pipeline folder, '' to skip"),
        BenchArgument("--batch-size", "batch_size", "labels in the throughput batch, CFG doubles it", int),
        REPEATS,
        NUM_SAMPLES,
        SEEDS,
        BenchArgument("--seed", "seed", "seed of the timed calls", int),
        THREADS,
        OUT,
    ),
)
