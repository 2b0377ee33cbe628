"""The shipped pipelines give the samples they gave before the structure refactor, bit for bit (same seed, same
call): tests/data/reference_samples.safetensors was written by tests/reference_samples.py before the change."""

import pytest
import torch
from safetensors.torch import load_file

from reference_samples import CALLS, FILE, sample


@pytest.mark.parametrize("name", sorted(CALLS))
def test_shipped_pipeline_samples_are_unchanged(name):
    expected = load_file(FILE)[name]
    got = sample(name)
    assert got.shape == expected.shape
    assert torch.equal(got, expected), f"{name}: max abs diff {(got - expected).abs().max().item():.3g}"
