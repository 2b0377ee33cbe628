"""Where DDT's background speckle under encoder sharing comes from: the reuse span and the reused steps.

    python scripts/ddt_speckle.py [pipelines/ddt-fashion] [--samples 16] [--steps 30 60 120] [--rates 2 4]

Prints three tables, all on the same noise and labels (seed 0), background speckle = `genlab.eval.background_speckle`
against the unshared samples of the same step count:
1. speckle vs the step count N and the refresh rate r, uniform sharing, official (stale z) and re-timed z: the
   reuse span in t is r / N;
2. at N = the first --steps value, every step but one as a key step, for each step j: how much one stale step adds;
3. at that N, the statdp schedule of the last --rates value against the same number of keys crowded at the end;
4. the real test images' own speckle, for scale.
"""

from __future__ import annotations

import argparse
import time

import torch

from genlab.acceleration import ReusePolicy
from genlab.eval import background_speckle, real_reference
from genlab.pipelines.loading import load_pipeline, sampling_defaults, training_info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", nargs="?", default="pipelines/ddt-fashion")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 60, 120])
    parser.add_argument("--rates", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, guidance, _ = sampling_defaults(args.pipeline, None, args.guidance)
    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    num_classes = pipe.transformer.config.num_classes
    labels = [i % num_classes for i in range(args.samples)]
    start = time.perf_counter()

    def sample(steps, **sharing):
        return pipe(labels, num_inference_steps=steps, guidance_scale=guidance, output_type="pt",
                    generator=torch.Generator().manual_seed(0), **sharing).images * 2 - 1

    print(f"# {args.pipeline}: {args.samples} samples, CFG {guidance:g}, seed 0\n")
    print("| N | r | reuse span r/N | none | official (stale z) | re-timed z |\n|---|---|---|---|---|---|")
    for steps in args.steps:
        plain = sample(steps)
        for r in args.rates:
            official = sample(steps, sharing="uniform", refresh_rate=r)
            retimed = sample(steps, sharing="uniform", refresh_rate=r, retime_shared=True)
            print(f"| {steps} | {r} | {r / steps:.3f} | {1000 * background_speckle(plain, plain):.2f} | "
                  f"{1000 * background_speckle(official, plain):.2f} | {1000 * background_speckle(retimed, plain):.2f} |")

    steps = args.steps[0]
    plain = sample(steps)
    base = background_speckle(plain, plain)
    print(f"\nN = {steps}, all steps keys but step j (z of step j - 1 reused once), speckle ×10⁻³ "
          f"(none: {1000 * base:.2f}):\n\n| j | t_j | speckle | added |\n|---|---|---|---|")
    grid = pipe.scheduler.time_grid(steps)
    for j in range(1, steps):
        x = sample(steps, sharing=ReusePolicy.explicit([k for k in range(steps) if k != j]))
        s = background_speckle(x, plain)
        print(f"| {j} | {float(grid[j]):.3f} | {1000 * s:.2f} | {1000 * (s - base):+.2f} |")
    r = args.rates[-1]
    statdp = pipe.key_steps(pipe.sharing_policy("statdp", r, None, steps), steps, pipe.guidance_schedule(guidance, None))
    k = len(statdp)
    print(f"\nN = {steps}, K = {k} key steps placed differently (statdp r = {r}, then ever more keys at the end):\n\n"
          "| key steps | speckle ×10⁻³ | MSD vs none |\n|---|---|---|")
    placements = [statdp] + [list(range(0, steps - tail, max(1, (steps - tail) // (k - tail))))[:k - tail]
                             + list(range(steps - tail, steps)) for tail in (1, 2, 3)]
    for keys in placements:
        x = sample(steps, sharing=ReusePolicy.explicit(keys))
        print(f"| {', '.join(map(str, keys))} | {1000 * background_speckle(x, plain):.2f} | "
              f"{float(((x - plain) ** 2).mean()):.5f} |")
    dataset = training_info(args.pipeline).get("dataset")
    if dataset:
        print(f"\nreal {dataset} test images, their own background: "
              f"{1000 * background_speckle(real_reference(dataset, 'test')):.2f} ×10⁻³")
    print(f"\n{time.perf_counter() - start:.0f} s; command: python scripts/ddt_speckle.py {args.pipeline} "
          f"--samples {args.samples} --steps {' '.join(map(str, args.steps))} --rates {' '.join(map(str, args.rates))}")


if __name__ == "__main__":
    main()
