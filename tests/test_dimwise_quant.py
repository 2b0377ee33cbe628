"""TokenBridge's dimension-wise quantizer: the level table, round trips, index entropy, the frequency channel order
and one-line errors (TokenBridge spec checks 1, 2, 3 and 10)."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.tokenizers.dimwise_quant import DimensionwiseQuantizer, compute_channel_order


def test_the_gaussian_level_table_for_64_levels():
    q = DimensionwiseQuantizer(64)
    g, b = q.reconstruction_values, q.boundaries
    assert g.shape == (64,) and b.shape == (65,) and q.bits == 6
    assert g[0].item() == pytest.approx(-2.4371, abs=1e-4) and g[63].item() == pytest.approx(2.4371, abs=1e-4)
    assert g[31].item() == pytest.approx(-0.0196, abs=1e-4) and g[32].item() == pytest.approx(0.0196, abs=1e-4)
    assert (g[1:] > g[:-1]).all() and torch.allclose(g, -g.flip(0), atol=1e-6)  # increasing, antisymmetric
    assert b[0].item() == -3 and b[-1].item() == 3  # the end boundaries are clamped, not +-inf
    gaps = g[1:] - g[:-1]
    assert gaps.min().item() == pytest.approx(0.039, abs=1e-3) and gaps.max().item() == pytest.approx(0.443, abs=1e-3)
    # dequantized range of the defaults: +-4.062
    assert q.dequantize(torch.tensor([[0, 63]])).tolist()[0] == pytest.approx([-4.062, 4.062], abs=1e-3)


def test_round_trips_and_the_nearest_level_rule():
    q = DimensionwiseQuantizer(64, num_channels=4)
    every = torch.arange(64).repeat(4, 1).t()  # (64, 4): every index in every channel
    assert torch.equal(q.quantize(q.dequantize(every))[0], every)
    x = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0))
    idx, deq = q.quantize(x)
    assert idx.dtype == torch.int64 and idx.shape == x.shape and torch.equal(deq, q.dequantize(idx))
    # nearest gamma by brute force gives the same indices as the midpoint search
    brute = (q.normalize(x)[..., None] - q.reconstruction_values).abs().argmin(-1)
    assert torch.equal(idx, brute)
    # the error inside the dequantized range is at most half the largest gap, in latent units (10 / 6 per unit)
    inside = x.abs() <= 4.0
    bound = (q.reconstruction_values.diff().max() / 2 * 10 / 6).item()
    assert (x - deq)[inside].abs().max().item() <= bound + 1e-6
    # interval membership is a different rule: it disagrees on a small share of Gaussian values (~0.5 %)
    membership = (torch.bucketize(q.normalize(x).contiguous(), q.boundaries[1:-1], right=True)).clamp(0, 63)
    share = (membership != idx).float().mean().item()
    assert 0.001 < share < 0.02


def test_index_entropy_on_gaussian_latents():
    q = DimensionwiseQuantizer(64)
    idx, _ = q.quantize(torch.randn(200000, generator=torch.Generator().manual_seed(1))[:, None])
    stats = q.codebook_usage(idx)
    assert stats["entropy_bits"] == pytest.approx(5.72, abs=0.03) and stats["usage"] == 1.0
    narrow, _ = q.quantize(0.1 * torch.randn(200000, generator=torch.Generator().manual_seed(1))[:, None])
    assert q.codebook_usage(narrow)["entropy_bits"] < 3.5  # a badly set range shows as a far lower entropy


def test_uniform_scheme_and_fit_range():
    q = DimensionwiseQuantizer(8, value_range=(-1.0, 1.0), scheme="uniform")
    assert torch.allclose(q.reconstruction_values.diff(), torch.full((7,), 0.75))
    assert q.dequantize(torch.tensor([0, 7])).tolist() == pytest.approx([-0.875, 0.875])
    x = 2 * torch.randn(100000, generator=torch.Generator().manual_seed(2))
    lo, hi = DimensionwiseQuantizer.fit_range(x, coverage=0.95)
    assert lo == -hi and hi == pytest.approx(2 * 1.96, rel=0.03)
    assert DimensionwiseQuantizer(64, value_range=(lo, hi)).out_of_range(x) == pytest.approx(0.05, abs=0.005)


def test_frequency_channel_order():
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(16, 1, 8, 8, generator=g)  # white: power spread evenly over frequencies
    smooth = torch.nn.functional.avg_pool2d(torch.randn(16, 1, 16, 16, generator=g), 2)
    smooth = torch.nn.functional.interpolate(smooth, size=(8, 8), mode="bilinear")  # low-pass
    latents = torch.cat([noise, smooth, noise.flip(0)], 1)
    order = compute_channel_order(latents)
    assert sorted(order) == [0, 1, 2] and order[0] == 1  # a permutation, low-pass channel first
    assert compute_channel_order(latents) == order  # deterministic


def test_bad_input_gives_one_line_errors():
    for kwargs, message in ((dict(num_levels=1), "num_levels must be an integer >= 2"),
                            (dict(value_range=(1.0, 1.0)), "max > min"),
                            (dict(std_range=0.0), "std_range must be > 0"),
                            (dict(scheme="log"), "unknown quantizer scheme 'log'")):
        with pytest.raises(GenlabError, match=message):
            DimensionwiseQuantizer(**kwargs)
    q = DimensionwiseQuantizer(16, num_channels=4)
    with pytest.raises(GenlabError, match="has 8 channels in its last dimension; this quantizer was set up for 4"):
        q.quantize(torch.zeros(2, 5, 8))
    with pytest.raises(GenlabError, match=r"indices must be integers in \[0, 16\)"):
        q.dequantize(torch.full((1, 4), 16))
    with pytest.raises(GenlabError, match="a \\(N, C, h, w\\) tensor"):
        compute_channel_order(torch.zeros(4, 8))
    assert math.isclose(DimensionwiseQuantizer(32).bits, 5)
