"""Test-session settings shared by every test file."""

import os

import torch

# The models under test are tiny: on a 2-core machine one intra-op thread avoids thread-pool overhead and keeps
# the suite fast, also while a training run occupies the other core.
torch.set_num_threads(1)
# Under pytest-xdist, the processes a worker starts (CLI commands, notebook kernels, the README's commands) use one
# thread too: with two workers on two cores, a child with a full thread pool would oversubscribe the machine. Only
# in the workers: the controller's environment is the workers' own, and the thread count a process starts with
# picks its float kernels (the reference samples are compared exactly).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time
