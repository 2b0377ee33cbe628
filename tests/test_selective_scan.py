"""The pure-torch Mamba-2 (spec mvar.md §7, §10 check 4): the chunked SSD scan equals the sequential recurrence for
lengths that are and are not multiples of the chunk, from a given state; feeding a sequence in pieces with the
carried state equals one pass over it (and the official re-run-the-prefix mode); mamba_ssm's parameter names; the
conv and the scan are causal."""

import pytest
import torch

from genlab.errors import GenlabError
from genlab.layers.selective_scan import Mamba2, ssd_chunked, ssd_sequential


def random_scan(b=2, length=37, h=3, p=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, h, p, generator=g, dtype=torch.float64)
    dt = torch.nn.functional.softplus(torch.randn(b, length, h, generator=g, dtype=torch.float64))
    A = -torch.rand(h, generator=g, dtype=torch.float64) * 4
    B = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    D = torch.randn(h, generator=g, dtype=torch.float64)
    state = torch.randn(b, h, p, n, generator=g, dtype=torch.float64)
    return x, dt, A, B, C, D, state


@pytest.mark.parametrize("length, chunk", [(37, 8), (32, 8), (5, 16), (1, 4), (130, 64)])
def test_chunked_scan_equals_the_sequential_recurrence(length, chunk):
    x, dt, A, B, C, D, state = random_scan(length=length)
    for start in (None, state):
        y_seq, h_seq = ssd_sequential(x, dt, A, B, C, D, start)
        y_chk, h_chk = ssd_chunked(x, dt, A, B, C, D, start, chunk_size=chunk)
        assert torch.allclose(y_chk, y_seq, atol=1e-10) and torch.allclose(h_chk, h_seq, atol=1e-10)


def test_long_decays_stay_finite_and_exact():
    """Strong decays over a long chunk: the masked segment sums never form exp(big - big)."""
    x, dt, A, B, C, D, _ = random_scan(length=200, h=2)
    A = A * 50
    y_seq, _ = ssd_sequential(x, dt, A, B, C, D)
    y_chk, _ = ssd_chunked(x, dt, A, B, C, D, chunk_size=200)
    assert torch.isfinite(y_chk).all() and torch.allclose(y_chk, y_seq, atol=1e-10)


def mixer(seed=0, **kw):
    torch.manual_seed(seed)
    return Mamba2(32, d_state=8, headdim=16, chunk_size=8, **kw).double()


def test_carried_state_over_pieces_equals_one_pass_and_the_prefix_rerun():
    m = mixer()
    u = torch.randn(2, 30, 32, dtype=torch.float64)
    full, _ = m(u)
    assert torch.allclose(m(u, scan="sequential")[0], full, atol=1e-10)
    pieces, state, start = [], None, 0
    for size in (1, 4, 9, 16):  # scales 1, 2, 3, 4 of a VAR pyramid
        out, state = m(u[:, start:start + size], state)
        pieces.append(out)
        start += size
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-10)
    # M-VAR's official sampler re-runs the mixer over the whole prefix at every scale and keeps the tail
    rerun = torch.cat([m(u[:, :end])[0][:, end - size:] for end, size in ((1, 1), (5, 4), (14, 9), (30, 16))], 1)
    assert torch.allclose(rerun, full, atol=1e-10)


def test_the_mixer_is_causal():
    m = mixer()
    u = torch.randn(1, 20, 32, dtype=torch.float64)
    v = u.clone()
    v[:, 12:] += 1.0
    a, b = m(u)[0], m(v)[0]
    assert torch.equal(a[:, :12], b[:, :12]) and not torch.allclose(a[:, 12:], b[:, 12:])


def test_parameter_names_and_sizes_are_mamba_ssm_s():
    m = Mamba2(128)  # mamba_ssm defaults: d_state 64, d_conv 4, expand 2, headdim 64 -> 4 heads
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"in_proj.weight": (2 * 256 + 2 * 64 + 4, 128), "conv1d.weight": (256 + 128, 1, 4),
                      "conv1d.bias": (384,), "dt_bias": (4,), "A_log": (4,), "D": (4,), "norm.weight": (256,),
                      "out_proj.weight": (128, 256)}
    assert (m.A_log.exp() >= 1).all() and (m.A_log.exp() <= 16).all()
    dt = torch.nn.functional.softplus(m.dt_bias)
    assert (dt >= 1e-4 - 1e-9).all() and (dt <= 0.1 + 1e-6).all()


def test_bad_settings_are_one_line_errors():
    with pytest.raises(GenlabError, match="multiple of headdim"):
        Mamba2(48, headdim=64)
    with pytest.raises(GenlabError, match="d_state"):
        Mamba2(64, d_state=0)
    with pytest.raises(GenlabError, match="scan must be"):
        mixer()(torch.randn(1, 3, 32, dtype=torch.float64), scan="fast")


def test_float32_mixer_chunked_equals_sequential_within_1e_5():
    torch.manual_seed(0)
    m = Mamba2(128)  # 4 heads of 64, d_state 64, chunk 64; L = 130 (the tiny VAR pyramid) is not a multiple
    u = torch.randn(2, 130, 128)
    with torch.no_grad():
        assert (m(u)[0] - m(u, scan="sequential")[0]).abs().max() < 1e-5
