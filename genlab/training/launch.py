"""Make `accelerate launch --cpu --num_processes N ...` start N workers.

Accelerate's launcher sends `--cpu` runs to its "simple" launcher, which starts a single process unless an MPI
host file is given (huggingface/accelerate#2741): the command that reads as "DDP on 2 CPU processes" silently
trains on one. When genlab's CLI finds itself in exactly that situation (ACCELERATE_USE_CPU set, no WORLD_SIZE, and
the parent `accelerate launch` asked for N > 1 processes) it starts the N workers itself with torch's elastic
launcher (torchrun) on 127.0.0.1; Accelerate then sees WORLD_SIZE = N and uses DDP with the gloo backend.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def requested_cpu_processes() -> int | None:
    """N from the parent `accelerate launch --cpu --num_processes N` command line, else None."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1") or "WORLD_SIZE" in os.environ:
        return None
    try:
        import psutil  # installed with accelerate

        parent = psutil.Process(os.getppid()).cmdline()
    except Exception:
        return None
    text = " ".join(parent)
    if "accelerate" not in text or "launch" not in parent and "accelerate.commands.launch" not in text:
        return None
    for i, arg in enumerate(parent):
        for flag in ("--num_processes", "--num-processes"):
            if arg == flag and i + 1 < len(parent):
                value = parent[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            return int(value) if value.isdigit() else None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relaunch_cpu_workers(num_processes: int, argv: list[str]) -> int:
    """Run `python -m genlab.cli argv` as num_processes torchrun workers; returns the launcher's exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(num_processes),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "genlab.cli", *argv]
    env = dict(os.environ, ACCELERATE_USE_CPU="True")
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(cmd, env=env)
