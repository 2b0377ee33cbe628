"""`genlab bench tokenbridge`: TokenBridge against continuous-token MAR, measured in one run on the same seeds.

* Reconstruction vs B: the test images' continuous latents (TokenBridge's tokenizer) quantized dimension-wise into
  B in {4, 8, 16, 32, 64} levels (Gaussian-quantile and uniform levels on the model's value range), decoded and
  compared with the decode of the continuous latents (PSNR in dB; RMSE in latent units; the share of values outside
  the range), and the Fréchet distance of those decodes to the test split: the floor the quantizer alone puts under
  the Fréchet distance of anything sampled in its levels.
* Head speed per token: TokenBridge's channel-AR head (C passes, KV cache) against MAR's MLP diffusion head (its
  recipe's chain) on the same decoder states, at batch 1 and 64 tokens, each as its pipeline runs it under CFG:
  the diffusion head denoises the [uncond ; cond] rows at every step, the channel head runs once on the mixed state.
* Head NLL: a fresh channel-AR head and a fresh parallel head (the paper's ablation), trained for the same steps on
  the frozen TokenBridge backbone's states of masked training tokens; held-out NLL in bits per position on test
  images (the shipped, jointly trained AR head's too).
* Whole-image sampling time of both pipelines with their recipes' settings (batch 1 and the throughput batch) and
  quality over sampling seeds (class accuracy, Fréchet distance; mean ± spread).
"""

from __future__ import annotations

import math

from ..errors import GenlabError, check_positive_int
from .harness import (NUM_SAMPLES, OUT, REPEATS, SEEDS, THREADS, Bench, BenchArgument, BenchSummary, check_seed, check_seeds,
                      pipeline_call, pipeline_quality, ratio, time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, quality_table, write_report

LEVELS = (4, 8, 16, 32, 64)
HEAD_BATCHES = (1, 64)


def _images(dataset: str, split: str, count: int | None = None):
    """(images, labels) of a split: the first `count`, or all."""
    from ..data import load_dataset

    data = load_dataset(dataset, split)
    return data.images[:count], data.labels[:count]


def reconstruction(pipe, dataset: str, levels=LEVELS, num_images: int = 1000) -> tuple[list[dict], float]:
    """Per quantizer: PSNR of the decode of dimension-wise quantized latents against the decode of the continuous
    ones, and the Fréchet distance of those decodes to the test split (the floor the quantizer puts under any
    sampler's Fréchet distance). Also returns the continuous decodes' Fréchet distance."""
    import torch

    from ..tokenizers.dimwise_quant import DimensionwiseQuantizer
    from ..training.objectives import encode_latents
    from . import frechet_distance, load_classifier, real_reference
    from .metrics import psnr

    tokenizer, q_model = pipe.image_tokenizer, pipe.transformer.quantizer
    images, _ = _images(dataset, "test", num_images)
    classifier, reals = load_classifier(dataset), real_reference(dataset, "test")
    with torch.no_grad():
        latents = encode_latents(tokenizer, images, torch.Generator().manual_seed(0)).movedim(1, -1)
        reference = tokenizer.decode(latents.movedim(-1, 1)).clamp(-1, 1)
        rows = []
        for scheme in ("gaussian", "uniform"):
            for b in levels:
                q = DimensionwiseQuantizer(b, q_model.value_range, q_model.std_range, scheme)
                deq = q.quantize(latents)[1]
                decoded = tokenizer.decode(deq.movedim(-1, 1)).clamp(-1, 1)
                rows.append({"scheme": scheme, "levels": b, "psnr": psnr(decoded, reference),
                             "latent_rmse": (deq - latents).pow(2).mean().sqrt().item(),
                             "out_of_range": q.out_of_range(latents),
                             "frechet_distance": frechet_distance(reals, decoded, classifier)})
    return rows, frechet_distance(reals, reference, classifier)


def head_speed(tb_model, mar_model, batches, repeats: int, guidance: float, seed: int) -> list[dict]:
    """Per-token seconds of both heads on the same decoder states, each under CFG as its pipeline runs it."""
    import torch

    from ..modeling import count_parameters

    d = tb_model.head.condition_proj.in_features
    if mar_model.backbone.decoder_norm.normalized_shape[0] != d:
        raise GenlabError("the two models' decoder widths differ: their heads cannot take the same states")
    rows = []
    for m in batches:
        z = torch.randn(m, d, generator=torch.Generator().manual_seed(seed))
        both = torch.cat([z, z])

        def tb(z=z):
            with torch.no_grad():
                return tb_model.sample_head(torch.cat([z, z]), guidance, 1.0, torch.Generator().manual_seed(seed), 0)

        def mar(both=both):
            with torch.no_grad():
                return mar_model.sample_head(both, guidance, 1.0, torch.Generator().manual_seed(seed),
                                             mar_model.config.head_steps)

        _, timing = time_round_robin({"TokenBridge": tb, "MAR": mar}, repeats)
        rows.append({"tokens": m, "seconds_per_token": {n: t.median / m for n, t in timing.items()},
                     "spread_per_token": {n: (t.spread[0] / m, t.spread[1] / m) for n, t in timing.items()},
                     "head_over_mar_speed": ratio(timing["MAR"], timing["TokenBridge"]),
                     "parameters": {"TokenBridge": count_parameters(tb_model.head),
                                    "MAR": count_parameters(mar_model.head)},
                     "passes": {"TokenBridge": tb_model.token_dim, "MAR": mar_model.config.head_steps}})
    return rows


def _masked_states(model, tokenizer, images, labels, generator):
    """Decoder states and quantized targets (M, D), (M, C) of MAR's training mask on these images."""
    import torch

    from ..schedulers.masking import mask_from_order, random_orders, truncnorm_ratio
    from ..training.objectives import encode_latents

    with torch.no_grad():
        tokens = model.tokens_from_latents(encode_latents(tokenizer, images, generator))
        idx, deq = model.quantizer.quantize(tokens)
        n = tokens.shape[1]
        mask = mask_from_order(random_orders(tokens.shape[0], n, generator), math.ceil(n * truncnorm_ratio(generator)))
        z = model.decoder_states(deq, model.condition(class_labels=labels), mask)
    return z[mask], idx[mask]


def head_nll(pipe, dataset: str, steps: int, batch_size: int, num_test: int, seed: int) -> dict:
    """Held-out bits per position of fresh AR and parallel heads trained on the frozen backbone (and the shipped
    head's)."""
    import torch

    from ..layers.channel_heads import ChannelARHead, ParallelChannelHead
    from ..modeling import count_parameters

    model, tokenizer = pipe.transformer.eval(), pipe.image_tokenizer
    c = model.config
    train_images, train_labels = _images(dataset, "train")
    test = _masked_states(model, tokenizer, *_images(dataset, "test", num_test), torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    args = (model.token_dim, c.num_levels, model.head.condition_proj.in_features, c.head_width, c.head_depth,
            c.head_heads)
    heads = {"AR (fresh)": ChannelARHead(*args, order=model.head.order.tolist()),
             "parallel (fresh)": ParallelChannelHead(*args)}
    g = torch.Generator().manual_seed(seed + 1)
    for head in heads.values():
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.0)
        for _ in range(steps):
            pick = torch.randint(0, len(train_images), (batch_size,), generator=g)
            z, q = _masked_states(model, tokenizer, train_images[pick], train_labels[pick], g)
            loss = head.loss(z, q)
            opt.zero_grad()
            loss.backward()
            opt.step()
    heads["AR (shipped, trained with the backbone)"] = model.head
    out = {}
    for name, head in heads.items():
        head.eval()
        with torch.no_grad():
            nats = head.loss(*test).item()
        out[name] = {"bits_per_position": nats * model.token_dim / math.log(2), "parameters": count_parameters(head)}
    return out


def bench_tokenbridge(tb_path: str = "pipelines/tokenbridge-fashion", mar_path: str = "pipelines/mar-fashion",
                      levels=LEVELS, num_recon: int = 1000, nll_steps: int = 300, nll_batch: int = 16,
                      num_test: int = 500, batch_size: int = 16, repeats: int = 3, num_samples: int = 200,
                      seeds=(0, 1, 2), seed: int = 0, threads: int = 2, out: str | None = "bench/tokenbridge.md") -> dict:
    """Benchmark TokenBridge vs MAR; see the module doc."""
    from ..pipelines.loading import sampling_defaults, training_info

    levels = [check_positive_int(b, "levels") for b in levels]
    if any(b < 2 for b in levels):
        raise GenlabError(f"levels must be >= 2, got {levels}")
    for value, name in ((num_recon, "num_recon"), (nll_steps, "nll_steps"), (nll_batch, "nll_batch"),
                        (num_test, "num_test"), (batch_size, "batch_size"), (repeats, "repeats"),
                        (num_samples, "num_samples")):
        check_positive_int(value, name)
    check_seed(seed)
    seeds = check_seeds(seeds)
    arguments = dict(tb_path=tb_path, mar_path=mar_path, levels=levels, num_recon=num_recon, nll_steps=nll_steps,
                     nll_batch=nll_batch, num_test=num_test, batch_size=batch_size, repeats=repeats,
                     num_samples=num_samples, seeds=seeds, seed=seed, threads=threads, out=out)
    with torch_threads(threads):
        pipes = {"TokenBridge": load_expected(tb_path, "TokenBridgePipeline", "--tokenbridge"),
                 "MAR": load_expected(mar_path, "MARPipeline", "--mar")}
        paths = {"TokenBridge": tb_path, "MAR": mar_path}
        dataset = training_info(tb_path).get("dataset")
        samples = {n: sampling_defaults(p)[2] for n, p in paths.items()}
        recon, continuous_fd = (reconstruction(pipes["TokenBridge"], dataset, levels, num_recon) if dataset
                                else ([], None))
        heads = head_speed(pipes["TokenBridge"].transformer, pipes["MAR"].transformer, HEAD_BATCHES, repeats,
                           samples["TokenBridge"].get("guidance_scale", 3.0), seed)
        speed = []
        k = pipes["TokenBridge"].transformer.config.num_classes
        for batch in sorted({1, batch_size}):
            labels = [i % k for i in range(batch)]
            _, timing = time_round_robin({n: pipeline_call(p, labels, samples[n], seed) for n, p in pipes.items()}, repeats)
            speed.append({"batch_size": batch, "seconds": {n: t.median for n, t in timing.items()},
                          "spread": {n: t.spread for n, t in timing.items()},
                          "tb_over_mar_speed": ratio(timing["MAR"], timing["TokenBridge"])})
        dataset, quality = pipeline_quality(pipes, paths, num_samples, seeds)
        nll = head_nll(pipes["TokenBridge"], dataset, nll_steps, nll_batch, num_test, seed)

    uniform = [r["psnr"] for r in recon if r["scheme"] == pipes["TokenBridge"].transformer.quantizer.scheme]
    t, m = quality["TokenBridge"], quality["MAR"]
    verdict = {"psnr_monotone": all(b >= a for a, b in zip(uniform, uniform[1:])),
               "head_3x_faster": all(h["head_over_mar_speed"] >= 3 for h in heads),
               "ar_nll_lower": nll["AR (fresh)"]["bits_per_position"] < nll["parallel (fresh)"]["bits_per_position"],
               "fd_on_par": t["fd_mean"] <= m["fd_mean"] + max(t["fd_std"], m["fd_std"])}
    command = BENCH.command(arguments)
    result = {"bench": "tokenbridge", "command": command, "arguments": arguments, "machine": machine_info(threads),
              "dataset": dataset, "reconstruction": recon, "continuous_fd": continuous_fd, "heads": heads,
              "speed": speed, "nll": nll, "quality": quality, "verdict": verdict}
    result["summary"] = BenchSummary(
        method="TokenBridge (dimension-wise quantized tokens, channel-AR head)",
        baseline="MAR (continuous tokens, MLP diffusion head)", dataset=dataset,
        speed_ratio=speed[-1]["tb_over_mar_speed"],
        method_quality={"class_accuracy": t["accuracy_mean"], "frechet_distance": t["fd_mean"]},
        baseline_quality={"class_accuracy": m["accuracy_mean"], "frechet_distance": m["fd_mean"]},
        command=command, extra={"head_speed_ratio_batch_1": heads[0]["head_over_mar_speed"]}).to_dict()
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    a, v = r["arguments"], r["verdict"]
    lines = ["# TokenBridge bench: dimension-wise quantized tokens and a channel-AR head vs continuous MAR", "",
             f"Command: `{r['command']}`", "", machine_line(r["machine"]), "",
             f"Reconstruction of {a['num_recon']} test images of `{r['dataset']}`: the decode of the quantized latents "
             "against the decode of the continuous ones, and the Fréchet distance of those decodes to the test split: "
             "the floor a quantizer puts under any sampler's Fréchet distance (the continuous decodes: "
             f"{'—' if r['continuous_fd'] is None else format(r['continuous_fd'], '.2f')}).", "",
             "| levels B | scheme | PSNR (dB) | latent RMSE | outside the range | Fréchet distance |",
             "|---|---|---|---|---|---|"]
    for row in r["reconstruction"]:
        lines.append(f"| {row['levels']} | {row['scheme']} | {row['psnr']:.2f} | {row['latent_rmse']:.4f} | "
                     f"{100 * row['out_of_range']:.3f} % | {row['frechet_distance']:.2f} |")
    lines += ["", "Head time per token on the same decoder states, each head as its pipeline runs it under CFG "
              "(median of the timed calls, round-robin):", "",
              "| tokens | head | parameters | passes | ms / token (min-max) | MAR / TokenBridge |",
              "|---|---|---|---|---|---|"]
    for h in r["heads"]:
        for name in ("TokenBridge", "MAR"):
            lo, hi = (1e3 * x for x in h["spread_per_token"][name])
            ratio_cell = f"{h['head_over_mar_speed']:.2f}×" if name == "TokenBridge" else ""
            lines.append(f"| {h['tokens']} | {name} | {h['parameters'][name]:,} | {h['passes'][name]} | "
                         f"{1e3 * h['seconds_per_token'][name]:.3f} ({lo:.3f}-{hi:.3f}) | {ratio_cell} |")
    lines += ["", f"Held-out NLL on {a['num_test']} test images (MAR training masks), fresh heads trained "
              f"{a['nll_steps']} steps at batch {a['nll_batch']} on the frozen backbone:", "",
              "| head | parameters | bits per position |", "|---|---|---|"]
    for name, n in r["nll"].items():
        lines.append(f"| {name} | {n['parameters']:,} | {n['bits_per_position']:.3f} |")
    lines += ["", "Whole-image sampling with the recipes' settings:", "",
              "| batch | TokenBridge s (min-max) | MAR s (min-max) | MAR / TokenBridge time |", "|---|---|---|---|"]
    for s in r["speed"]:
        (tl, th), (ml, mh) = s["spread"]["TokenBridge"], s["spread"]["MAR"]
        lines.append(f"| {s['batch_size']} | {s['seconds']['TokenBridge']:.3f} ({tl:.3f}-{th:.3f}) | "
                     f"{s['seconds']['MAR']:.3f} ({ml:.3f}-{mh:.3f}) | {s['tb_over_mar_speed']:.2f}× |")
    lines += ["", *quality_table(r["quality"], ("TokenBridge", "MAR"))]
    yes = {True: "yes", False: "no"}
    lines += ["", (f"PSNR monotone in B: {yes[v['psnr_monotone']]}; channel-AR head at least 3× faster per token "
                   f"than MAR's at every batch: {yes[v['head_3x_faster']]}; AR head's NLL below the parallel head's: "
                   f"{yes[v['ar_nll_lower']]}; Fréchet distance on par with MAR's (within the spread or better): "
                   f"{yes[v['fd_on_par']]}."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "tokenbridge", bench_tokenbridge,
    "TokenBridge vs MAR: reconstruction vs quantization levels, per-token head time, AR vs parallel head NLL, "
    "whole-image sampling time and quality over sampling seeds.",
    arguments=(
        BenchArgument("--tokenbridge", "tb_path", "TokenBridge pipeline folder"),
        BenchArgument("--mar", "mar_path", "MAR pipeline folder (the baseline)"),
        BenchArgument("--levels", "levels", "quantization levels B of the reconstruction table", int, "+"),
        BenchArgument("--num-recon", "num_recon", "test images of the reconstruction table", int),
        BenchArgument("--nll-steps", "nll_steps", "training steps of each fresh head on the frozen backbone", int),
        BenchArgument("--nll-batch", "nll_batch", "images per training step of the fresh heads", int),
        BenchArgument("--num-test", "num_test", "test images of the held-out NLL", int),
        BenchArgument("--batch-size", "batch_size", "the throughput batch (batch 1 is always timed too)", int),
        REPEATS,
        NUM_SAMPLES,
        SEEDS,
        BenchArgument("--seed", "seed", "seed of the timed calls and the fresh heads", int),
        THREADS,
        OUT,
    ),
)
