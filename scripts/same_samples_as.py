"""Prove that the code of this checkout gives the same shipped-pipeline samples as an earlier commit, on this machine.

    python scripts/same_samples_as.py 9ef6088        # the commit that wrote the reference samples

tests/test_reference_samples.py compares against a file written on another machine, where other float32 kernels move
continuous samples by ~1e-6. This script removes the machine from the comparison: it checks the commit out into a
temporary git worktree, runs that commit's tests/reference_samples.py there (its code, its pipelines, this
interpreter, one torch thread), then samples the same calls with this checkout's code and compares bit for bit.
Exit status 1 if any call differs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commit", help="an earlier commit that has tests/reference_samples.py")
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from reference_samples import sample

    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", tree, args.commit], check=True)
        try:
            script = os.path.join(tree, "tests", "reference_samples.py")
            if not os.path.isfile(script):
                sys.exit(f"{args.commit} has no tests/reference_samples.py")
            env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS="1")
            # `--legacy`: the call names of that time (sharing_ratio); scripts that predate the flag ignore it
            subprocess.run([sys.executable, script, "--legacy"], check=True, env=env, cwd=tree)
            then = load_file(os.path.join(tree, "tests", "data", "reference_samples.safetensors"))
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=True)

    torch.set_num_threads(1)
    differ = 0
    for name in sorted(then):
        now = sample(name)
        same = now.shape == then[name].shape and torch.equal(now, then[name])
        diff = (now - then[name]).abs().max().item() if now.shape == then[name].shape else float("nan")
        print(f"{name:24s} {'bit-identical' if same else 'DIFFERS'}  max |now - {args.commit}| = {diff:.3g}")
        differ += not same
    print(f"{len(then) - differ} of {len(then)} calls bit-identical to {args.commit} on this machine")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
