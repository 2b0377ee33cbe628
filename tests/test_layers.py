import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.layers import (AdaLNBlock, FinalLayer, apply_rope, attention, attention_backend, drop_labels, patchify,
                           rope_frequencies, timestep_features, unpatchify, xformers_available)


def reference_attention(q, k, v, mask=None):
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return logits.softmax(-1) @ v


def test_attention_matches_reference_with_and_without_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    assert attention_backend(q) == "sdpa"  # CPU always uses torch SDPA
    torch.testing.assert_close(attention(q, k, v), reference_attention(q, k, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention(q, k, v, mask), reference_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    # the first query may only see the first key
    torch.testing.assert_close(attention(q, k, v, mask)[:, :, 0], v[:, :, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not (xformers_available() and torch.cuda.is_available()), reason="needs xformers on CUDA")
def test_xformers_agrees_with_sdpa(monkeypatch):  # runs only where xformers exists (a GPU machine)
    q, k, v = (torch.randn(2, 4, 64, 32, device="cuda", dtype=torch.float16) for _ in range(3))
    assert attention_backend(q) == "xformers"
    fast = attention(q, k, v)
    monkeypatch.setenv("GENLAB_ATTENTION", "sdpa")
    torch.testing.assert_close(fast, attention(q, k, v), atol=2e-3, rtol=2e-3)


def dot_after_rope(q, k, freqs, i, j):
    qr, kr = apply_rope(q, freqs), apply_rope(k, freqs)
    return (qr[0, 0, i] * kr[0, 0, j]).sum()


def test_rope_1d_depends_only_on_relative_position():
    freqs = rope_frequencies((20,), 16)
    q = torch.randn(1, 1, 1, 16).expand(1, 1, 20, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 1, 20, 16)
    a, b = dot_after_rope(q, k, freqs, 3, 7), dot_after_rope(q, k, freqs, 10, 14)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a, dot_after_rope(q, k, freqs, 3, 8), atol=1e-3)


@pytest.mark.parametrize("span", [None, 16.0])
def test_rope_2d_is_shift_invariant_on_the_grid(span):
    h, w, d = 6, 6, 16
    freqs = rope_frequencies((h, w), d, span=span)
    q = torch.randn(1, 1, 1, d).expand(1, 1, h * w, d)
    k = torch.randn(1, 1, 1, d).expand(1, 1, h * w, d)
    idx = lambda y, x: y * w + x  # noqa: E731  (row-major token order)
    a = dot_after_rope(q, k, freqs, idx(1, 1), idx(2, 3))
    b = dot_after_rope(q, k, freqs, idx(3, 2), idx(4, 4))  # same (dy, dx) = (1, 2)
    c = dot_after_rope(q, k, freqs, idx(1, 1), idx(3, 2))  # transposed displacement differs
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)


def test_rope_3d_and_bad_head_dims():
    assert rope_frequencies((2, 3, 4), 12).shape == (24, 6)
    with pytest.raises(GenlabError, match="divisible by 4"):
        rope_frequencies((4, 4), 18)
    with pytest.raises(GenlabError, match="divisible by 6"):
        rope_frequencies((2, 4, 4), 16)
    with pytest.raises(GenlabError, match="positive"):
        rope_frequencies((0, 4), 16)


def test_rope_keeps_norms():
    x = torch.randn(2, 3, 16, 8)
    out = apply_rope(x, rope_frequencies((4, 4), 8))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


def test_timestep_features_order_and_period():
    t = torch.tensor([0.0, 0.5])
    f = timestep_features(t, 8, max_period=10.0)
    assert torch.allclose(f[0, :4], torch.ones(4)) and torch.allclose(f[0, 4:], torch.zeros(4))  # [cos, sin]
    freqs = torch.exp(-math.log(10.0) * torch.arange(4) / 4)
    torch.testing.assert_close(f[1, :4], torch.cos(0.5 * freqs))


def test_patchify_roundtrip_and_channel_major_order():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 4, 12)
    # first token = top-left patch, channel-major: (c, py, px)
    assert torch.equal(tokens[0, 0], x[0, :, :2, :2].reshape(-1))
    assert torch.equal(tokens[0, 1], x[0, :, :2, 2:].reshape(-1))  # row-major patch order
    assert torch.equal(unpatchify(tokens, 2, 4, 4), x)


def test_adaln_zero_block_starts_as_identity_and_takes_tokenwise_condition():
    block = AdaLNBlock(32, 4, zero_init=True)
    x = torch.randn(2, 9, 32)
    assert torch.equal(block(x, torch.randn(2, 32)), x)
    block = AdaLNBlock(32, 4, zero_init=False)
    rope = rope_frequencies((3, 3), 8)
    per_sample = block(x, torch.randn(2, 1, 32), rope)
    per_token = block(x, torch.randn(2, 9, 32), rope)
    assert per_sample.shape == per_token.shape == x.shape
    assert torch.equal(FinalLayer(32, 12)(x, torch.randn(2, 32)), torch.zeros(2, 9, 12))


def test_label_dropout_rate_and_null_id():
    labels = torch.zeros(100_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.1, null_id=10, generator=torch.Generator().manual_seed(0))
    frac = (dropped == 10).float().mean().item()
    assert 0.09 < frac < 0.11
    assert set(dropped.unique().tolist()) == {0, 10}
    assert torch.equal(drop_labels(labels, 0.0, 10), labels)


def test_rope_frequencies_follow_their_formula():
    """Slot j of A-axis RoPE rotates by position_{axis j % A} * theta^(-2 A (j // A) / d), axes ordered (x, y, t);
    the 2-D grid positions are linspace(0, span, n) (DDT's normalised coordinates)."""
    from genlab.layers import rope_frequencies

    d, theta, span = 16, 10000.0, 16.0
    h, w = 3, 5
    freqs = rope_frequencies((h, w), d, theta, span)
    ys, xs = torch.meshgrid(torch.linspace(0, span, h, dtype=torch.float64),
                            torch.linspace(0, span, w, dtype=torch.float64), indexing="ij")
    pos = {0: xs.reshape(-1), 1: ys.reshape(-1)}
    for j in range(d // 2):
        omega = theta ** (-2 * 2 * (j // 2) / d)
        expected = torch.polar(torch.ones(h * w, dtype=torch.float64), pos[j % 2] * omega)
        torch.testing.assert_close(freqs[:, j], expected.to(torch.complex64), atol=1e-5, rtol=0)
    one_d = rope_frequencies((7,), 8, theta, None)
    expected = torch.polar(torch.ones(7, 4, dtype=torch.float64), torch.arange(7.0, dtype=torch.float64)[:, None]
                           * theta ** (-2 * torch.arange(4.0, dtype=torch.float64) / 8))
    torch.testing.assert_close(one_d, expected.to(torch.complex64), atol=1e-5, rtol=0)
    # applied to pairs (2j, 2j+1): a rotation of each pair by the slot's angle
    x = torch.randn(1, 1, h * w, d)
    from genlab.layers import apply_rope

    rotated = apply_rope(x, freqs)
    angle = torch.angle(freqs[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    torch.testing.assert_close(rotated[0, 0, :, 0], c * x[0, 0, :, 0] - s * x[0, 0, :, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(rotated[0, 0, :, 1], s * x[0, 0, :, 0] + c * x[0, 0, :, 1], atol=1e-5, rtol=0)
