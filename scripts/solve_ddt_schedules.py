"""Solve DDT's statistical-DP sharing schedules once and save them into a pipeline folder's model_index.json, so
`pipe(..., sharing="statdp")` never pays the template run at sampling time.

    python scripts/solve_ddt_schedules.py pipelines/ddt-digits [--steps 30 40] [--ratios 2 3 4 5] [--guidance G]

One template run (full recompute) per step count and guidance, then one DP per sharing ratio. The guidance defaults
to the pipeline's recipe sampling guidance (training_info.json).
"""

from __future__ import annotations

import argparse

import torch

from genlab.pipelines.loading import load_pipeline, sampling_defaults


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 40])
    parser.add_argument("--ratios", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--guidance", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    _, guidance, _ = sampling_defaults(args.pipeline, None, args.guidance)
    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    for steps in args.steps:
        for i, r in enumerate(args.ratios):
            keys = pipe.solve_sharing_schedule(steps, refresh_rate=r, guidance_scale=guidance, refresh=i == 0)
            print(f"{args.pipeline}: N={steps} CFG {guidance:g} r={r}: key steps {keys}")
    pipe.save_pretrained(args.pipeline)
    print(f"saved {len(pipe.config.sharing_schedules)} schedules into {args.pipeline}/model_index.json")


if __name__ == "__main__":
    main()
