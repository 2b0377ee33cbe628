"""`genlab bench mvar`: M-VAR against its VAR baseline, measured in one run on the same seeds.

Speed (random weights: timing needs none): a VARModel and an MVARModel of equal depth and width sample token
pyramids with the same tokenizer step (a random multi-scale VQ with the schedule's patch_nums; its image decoder is
left out, both models would pay it alike), CFG on, one forward pass per scale. Per schedule and batch: wall-clock
(warm-up, round-robin repeats, median and spread), FLOPs of one call (torch.utils.flop_counter), the attention
pairs of both masks (block-causal: sum p_k^2 cumL_k; block-diagonal: sum p_k^4) and the seconds M-VAR's Mamba
layers take (forward hooks). The tiny schedule (L = 130) and VAR's 256 px schedule (L = 680) run at batch 1 and
the throughput batch; a ladder of schedules at batch 1 shows how time grows with L.

Quality: the trained pipelines (each with its recipe's sampling settings), class accuracy and Fréchet distance
over sampling seeds (mean ± spread); by default the shipped digits pair (`--var pipelines/var-fashion --mvar
pipelines/mvar-fashion` once the fashion pair is trained: digits saturates and cannot tell the two apart). `--var ''`
leaves quality out (speed only).

`--device cuda` times the speed rows on the GPU (models and tokenizer moved there, every timed call and Mamba hook
ending with a device synchronize); the report names the scan M-VAR's Mamba-2 layers ran: mamba_ssm's fused kernel
where that package is installed, else genlab's chunked scan in torch. Quality runs stay on the CPU.
"""

from __future__ import annotations

from ..errors import GenlabError, check_positive_int
from .harness import (DEVICE, NUM_SAMPLES, OUT, REPEATS, SEEDS, THREADS, Bench, BenchArgument, BenchSummary, check_device,
                      check_seed, check_seeds, count_flops, device_clock, pipeline_quality, ratio, synchronized,
                      time_round_robin, torch_threads)
from .report import load_expected, machine_info, machine_line, quality_table, write_report

TINY = (1, 2, 3, 4, 6, 8)
VAR_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
LADDER = ((1, 2, 3, 4), TINY, (1, 2, 3, 4, 5, 6, 8, 10), (1, 2, 3, 4, 5, 6, 8, 10, 13), VAR_256)
GUIDANCE, TOP_P = 2.5, 0.96  # VAR's FID sampling setting (cfg 1.5 = guidance 2.5, top-p 0.96)


def _models(patch_nums, hidden_size, depth, num_heads, d_state, mamba_headdim, vocab_size, latent_channels,
            mvar_depth=None, device="cpu"):
    """(tokenizer, {"VAR": VARModel, "M-VAR": MVARModel}) with random weights for one schedule, on `device`; M-VAR
    has VAR's depth unless `mvar_depth` is given."""
    import torch

    from ..models.mvar import MVARModel
    from ..models.var import VARModel
    from ..tokenizers.multiscale_vq import MultiScaleVQTokenizer

    torch.manual_seed(0)
    common = dict(patch_nums=list(patch_nums), vocab_size=vocab_size, latent_channels=latent_channels,
                  hidden_size=hidden_size, depth=depth, num_heads=num_heads)
    tok = MultiScaleVQTokenizer(block_out_channels=(8,), norm_num_groups=4, latent_channels=latent_channels,
                                codebook_size=vocab_size, patch_nums=tuple(patch_nums)).eval().to(device)
    models = {"VAR": VARModel(**common).eval().to(device),
              "M-VAR": MVARModel(**{**common, "depth": mvar_depth or depth}, d_state=d_state,
                                 mamba_headdim=mamba_headdim).eval().to(device)}
    return tok, models


def _sampler(model, tok, batch: int, seed: int, device="cpu"):
    """A zero-argument seeded sampling call that ends with a wait for `device`."""
    import torch

    from ..models.sampling import generate_tokens
    from ..schedulers import GuidanceSchedule

    labels = (torch.arange(batch) % model.config.num_classes).to(device)

    def run():
        with torch.no_grad():
            return generate_tokens(model, labels, GuidanceSchedule(GUIDANCE, "linear"), top_p=TOP_P,
                                   generator=torch.Generator().manual_seed(seed),
                                   state_kwargs={"next_input": tok.next_scale_input})
    return synchronized(run, device)


def _mamba_seconds(model, run, device="cpu") -> float:
    """Seconds the Mamba-2 layers take in one call (0 for VAR); on a GPU each hook waits for the device first."""
    mambas = [b.mamba for b in model.blocks if hasattr(b, "mamba")]
    if not mambas:
        return 0.0
    clock = device_clock(device)
    total, starts, handles = [0.0], {}, []
    for m in mambas:
        handles.append(m.register_forward_pre_hook(lambda mod, a: starts.__setitem__(mod, clock())))
        handles.append(m.register_forward_hook(
            lambda mod, a, o: total.__setitem__(0, total[0] + clock() - starts[mod])))
    run()
    for h in handles:
        h.remove()
    return total[0]


def mamba_scan_used(device) -> str:
    """Which scan M-VAR's Mamba-2 layers run on `device` (spec mvar.md: mamba_ssm's kernel on CUDA where installed)."""
    import torch

    from ..layers.selective_scan import _mamba_ssm_scan

    if torch.device(device).type != "cuda":
        return "genlab's chunked SSD scan in torch (mamba_ssm's kernel is CUDA-only)"
    if _mamba_ssm_scan() is None:
        return "genlab's chunked SSD scan in torch (mamba_ssm is not installed here)"
    return "mamba_ssm's fused chunk scan (Triton)"


def attention_pairs(patch_nums) -> dict:
    """Allowed (query, key) pairs of both masks (spec mvar.md §10 check 1)."""
    from ..models.mvar import block_diagonal_mask
    from ..models.var import block_causal_mask

    return {"VAR": int(block_causal_mask(patch_nums).sum()), "M-VAR": int(block_diagonal_mask(patch_nums).sum())}


def _speed_row(patch_nums, batch: int, sizes: dict, repeats: int, seed: int, with_flops: bool = True,
               mvar_depth: int | None = None, device="cpu") -> dict:
    from ..modeling import count_parameters

    tok, models = _models(patch_nums, **sizes, mvar_depth=mvar_depth, device=device)
    calls = {name: _sampler(m, tok, batch, seed, device) for name, m in models.items()}
    warm, timing = time_round_robin(calls, repeats)
    row = {"patch_nums": list(patch_nums), "num_tokens": models["VAR"].num_tokens, "batch_size": batch,
           "depth": {n: len(m.blocks) for n, m in models.items()},
           "forward_passes": {n: warm[n].num_forward for n in models},
           "parameters": {n: count_parameters(m) for n, m in models.items()},
           "seconds": {n: t.median for n, t in timing.items()}, "spread": {n: t.spread for n, t in timing.items()},
           "times": {n: t.seconds for n, t in timing.items()},
           "mvar_over_var_speed": ratio(timing["VAR"], timing["M-VAR"]),
           "attention_pairs": attention_pairs(patch_nums)}
    row["pair_ratio"] = row["attention_pairs"]["M-VAR"] / row["attention_pairs"]["VAR"]
    row["mamba_seconds"] = _mamba_seconds(models["M-VAR"], calls["M-VAR"], device)
    if with_flops:
        row["flops"] = {n: count_flops(c)[0] for n, c in calls.items()}
        row["flop_ratio"] = row["flops"]["M-VAR"] / row["flops"]["VAR"]
    return row


def equal_parameter_depth(sizes: dict) -> int:
    """The M-VAR depth whose parameter count is closest to VAR's at `sizes` (an M-VAR block is about 1.5 VAR
    blocks: spec mvar.md §10 check 12), counted on the meta device."""
    import torch

    from ..modeling import count_parameters
    from ..models.mvar import MVARModel
    from ..models.var import VARModel

    common = dict(patch_nums=list(TINY), vocab_size=sizes["vocab_size"], latent_channels=sizes["latent_channels"],
                  hidden_size=sizes["hidden_size"], num_heads=sizes["num_heads"])
    with torch.device("meta"):
        target = count_parameters(VARModel(**common, depth=sizes["depth"]))
        counts = {d: count_parameters(MVARModel(**common, depth=d, d_state=sizes["d_state"],
                                                mamba_headdim=sizes["mamba_headdim"]))
                  for d in range(1, sizes["depth"] + 1)}
    return min(counts, key=lambda d: abs(counts[d] - target))


def _quality(var_path: str, mvar_path: str, num_samples: int, seeds) -> tuple[str, dict]:
    paths = {"VAR": var_path, "M-VAR": mvar_path}
    pipes = {"VAR": load_expected(var_path, "VARPipeline", "--var"),
             "M-VAR": load_expected(mvar_path, "MVARPipeline", "--mvar")}
    return pipeline_quality(pipes, paths, num_samples, seeds)


def bench_mvar(var_path: str = "pipelines/var-digits", mvar_path: str = "pipelines/mvar-digits",
               hidden_size: int = 256, depth: int = 6, num_heads: int = 4, d_state: int = 64,
               mamba_headdim: int = 64, vocab_size: int = 4096, latent_channels: int = 32, batch_size: int = 16,
               repeats: int = 3, num_samples: int = 200, seeds=(0, 1, 2), seed: int = 0, device: str = "cpu",
               threads: int = 2, out: str | None = "bench/mvar.md") -> dict:
    """Benchmark M-VAR vs VAR; see the module doc."""
    sizes = dict(hidden_size=check_positive_int(hidden_size, "hidden_size"), depth=check_positive_int(depth, "depth"),
                 num_heads=check_positive_int(num_heads, "num_heads"), d_state=check_positive_int(d_state, "d_state"),
                 mamba_headdim=check_positive_int(mamba_headdim, "mamba_headdim"),
                 vocab_size=check_positive_int(vocab_size, "vocab_size"),
                 latent_channels=check_positive_int(latent_channels, "latent_channels"))
    if hidden_size % num_heads:
        raise GenlabError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    if (2 * hidden_size) % mamba_headdim:
        raise GenlabError(f"Mamba-2's inner width 2 * hidden_size = {2 * hidden_size} is not a multiple of "
                          f"mamba_headdim {mamba_headdim}")
    batch_size = check_positive_int(batch_size, "batch_size")
    repeats = check_positive_int(repeats, "repeats")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_seed(seed)
    seeds = check_seeds(seeds)
    dev = check_device(device)
    if bool(var_path) != bool(mvar_path):
        raise GenlabError("give both --var and --mvar pipelines for the quality runs, or neither ('') for speed only")
    arguments = dict(var_path=var_path, mvar_path=mvar_path, **sizes, batch_size=batch_size, repeats=repeats,
                     num_samples=num_samples, seeds=seeds, seed=seed,
                     device=device if dev.type != "cpu" else None, threads=threads, out=out)
    with torch_threads(threads):
        dataset, quality = _quality(var_path, mvar_path, num_samples, seeds) if var_path else (None, None)
        speed = [_speed_row(p, b, sizes, repeats, seed, device=dev) for p in (TINY, VAR_256)
                 for b in sorted({1, batch_size})]
        growth = [_speed_row(p, 1, sizes, repeats, seed, with_flops=False, device=dev) for p in LADDER]
        # the brief's comparison: equal parameters (M-VAR shallower), at L = 680
        equal = [_speed_row(VAR_256, b, sizes, repeats, seed, mvar_depth=equal_parameter_depth(sizes), device=dev)
                 for b in sorted({1, batch_size})]

    big = next(r for r in speed if r["num_tokens"] == sum(p * p for p in VAR_256) and r["batch_size"] == batch_size)
    verdict = {"not_slower_at_680": big["seconds"]["M-VAR"] <= big["seconds"]["VAR"],
               "not_slower_at_680_equal_parameters": equal[-1]["seconds"]["M-VAR"] <= equal[-1]["seconds"]["VAR"]}
    if quality:
        v, m = quality["VAR"], quality["M-VAR"]
        verdict["fd_at_or_below"] = m["fd_mean"] <= v["fd_mean"]
        verdict["fd_not_worse"] = m["fd_mean"] <= v["fd_mean"] + max(v["fd_std"], m["fd_std"])
    command = BENCH.command(arguments)
    result = {"bench": "mvar", "command": command, "arguments": arguments, "machine": machine_info(threads, dev),
              "mamba_scan": mamba_scan_used(dev),
              "dataset": dataset, "speed": speed, "growth": growth, "equal_parameters": equal, "quality": quality,
              "verdict": verdict}
    if quality:
        result["summary"] = BenchSummary(
            method="M-VAR (intra-scale attention + Mamba-2)", baseline="VAR (block-causal attention)",
            dataset=dataset, speed_ratio=big["mvar_over_var_speed"],
            method_quality={"class_accuracy": quality["M-VAR"]["accuracy_mean"],
                            "frechet_distance": quality["M-VAR"]["fd_mean"]},
            baseline_quality={"class_accuracy": quality["VAR"]["accuracy_mean"],
                              "frechet_distance": quality["VAR"]["fd_mean"]},
            command=command, extra={"speed_at": f"L = {big['num_tokens']}, batch {batch_size}, random weights"},
        ).to_dict()
    result["markdown"] = _markdown(result)
    write_report(out, result["markdown"])
    return result


def _markdown(r: dict) -> str:
    a, gpu = r["arguments"], r["machine"].get("gpu")
    lines = ["# M-VAR bench: intra-scale attention + Mamba-2 vs VAR's block-causal attention"
             + (f" — GPU figures ({gpu})" if gpu else ""), "",
             f"Command: `{r['command']}`", "", machine_line(r["machine"]), "",
             f"M-VAR's Mamba-2 scan in this run: {r['mamba_scan']}.", "",
             (f"Speed: random weights, equal depth {a['depth']} and width {a['hidden_size']} ({a['num_heads']} heads; "
              f"M-VAR's Mamba-2 d_state {a['d_state']}, head width {a['mamba_headdim']}), {a['vocab_size']} codes of "
              f"{a['latent_channels']} dims; token sampling with CFG {GUIDANCE} (the rows double) and top-p {TOP_P}, "
              "the image decode left out. Median (min-max) of the timed calls after a warm-up, the two models "
              "timed round-robin; FLOPs by torch.utils.flop_counter; Mamba seconds by forward hooks on one call."),
             "", "| L | batch | model | parameters | passes | s / call (min-max) | GFLOP | attention pairs | "
             "s in Mamba |", "|---|---|---|---|---|---|---|---|---|"]
    for s in r["speed"]:
        for name in ("VAR", "M-VAR"):
            lo, hi = s["spread"][name]
            lines.append(f"| {s['num_tokens']} | {s['batch_size']} | {name} | {s['parameters'][name]:,} | "
                         f"{s['forward_passes'][name]} | {s['seconds'][name]:.3f} ({lo:.3f}-{hi:.3f}) | "
                         f"{s['flops'][name] / 1e9:.2f} | {s['attention_pairs'][name]:,} | "
                         f"{s['mamba_seconds'] if name == 'M-VAR' else 0:.3f} |")
        lines.append(f"| {s['num_tokens']} | {s['batch_size']} | VAR / M-VAR time: **{s['mvar_over_var_speed']:.2f}×** "
                     f"| | | | FLOP ratio {s['flop_ratio']:.2f} | pair ratio {s['pair_ratio']:.3f} | |")
    lines += ["", "Growth with L at batch 1 (the same models per schedule):", "",
              "| patch_nums | L | VAR s | M-VAR s | VAR / M-VAR time | M-VAR s in Mamba | pair ratio |",
              "|---|---|---|---|---|---|---|"]
    for g in r["growth"]:
        lines.append(f"| {tuple(g['patch_nums'])} | {g['num_tokens']} | {g['seconds']['VAR']:.3f} | "
                     f"{g['seconds']['M-VAR']:.3f} | {g['mvar_over_var_speed']:.2f}× | {g['mamba_seconds']:.3f} | "
                     f"{g['pair_ratio']:.3f} |")
    lines += ["", "At equal parameters, L = 680 (M-VAR shallower, the same width; the comparison the shipped pairs make):",
              "", "| batch | VAR depth / parameters | M-VAR depth / parameters | VAR s | M-VAR s | VAR / M-VAR time | "
              "FLOP ratio |", "|---|---|---|---|---|---|---|"]
    for e in r["equal_parameters"]:
        lines.append(f"| {e['batch_size']} | {e['depth']['VAR']} / {e['parameters']['VAR']:,} | "
                     f"{e['depth']['M-VAR']} / {e['parameters']['M-VAR']:,} | {e['seconds']['VAR']:.3f} | "
                     f"{e['seconds']['M-VAR']:.3f} | **{e['mvar_over_var_speed']:.2f}×** | {e['flop_ratio']:.2f} |")
    v = r["verdict"]
    lines += ["", f"M-VAR no slower than VAR at L = 680, batch {a['batch_size']}: at equal depth and width "
              f"{'yes' if v['not_slower_at_680'] else 'no'}; at equal parameters "
              f"{'yes' if v['not_slower_at_680_equal_parameters'] else 'no'}.", ""]
    if r["quality"]:
        lines += quality_table(r["quality"], ("VAR", "M-VAR"))
        lines += ["", (f"M-VAR's Fréchet distance at or below VAR's: {'yes' if v['fd_at_or_below'] else 'no'}; "
                       f"not worse within the spread: {'yes' if v['fd_not_worse'] else 'no'}."), ""]
    return "\n".join(lines)


BENCH = Bench(
    "mvar", bench_mvar,
    "M-VAR vs VAR: sampling time, FLOPs and attention pairs at L = 130 and 680 (batch 1 and the throughput batch), "
    "time growth with L, and quality of the trained pair over sampling seeds.",
    arguments=(
        BenchArgument("--var", "var_path", "VAR pipeline folder (the baseline; '' with --mvar '': speed only)"),
        BenchArgument("--mvar", "mvar_path", "M-VAR pipeline folder"),
        BenchArgument("--hidden-size", "hidden_size", "width of both timed models", int),
        BenchArgument("--depth", "depth", "blocks of both timed models", int),
        BenchArgument("--num-heads", "num_heads", "attention heads of both timed models", int),
        BenchArgument("--d-state", "d_state", "Mamba-2 state size of the timed M-VAR", int),
        BenchArgument("--mamba-headdim", "mamba_headdim", "Mamba-2 head width of the timed M-VAR", int),
        BenchArgument("--vocab-size", "vocab_size", "codebook size of the timed models", int),
        BenchArgument("--latent-channels", "latent_channels", "code width of the timed models", int),
        BenchArgument("--batch-size", "batch_size", "the throughput batch (batch 1 is always timed too)", int),
        REPEATS,
        NUM_SAMPLES,
        SEEDS,
        BenchArgument("--seed", "seed", "seed of the timed calls", int),
        DEVICE,
        THREADS,
        OUT,
    ),
)
