"""Test-session settings shared by every test file."""

import os

import torch

# The models under test are tiny: on a 2-core machine one intra-op thread avoids thread-pool overhead and keeps
# the suite fast, also while a training run occupies the other core.
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time
