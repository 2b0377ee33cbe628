"""TokenBridge's channel heads: causality over the slots, teacher-forced logits == the step-by-step sampler's, KV
cache == prefix recomputation, the channel permutation, the initial loss and one-line errors (spec checks 6-8, 11)."""

import math

import pytest
import torch

from genlab.errors import GenlabError
from genlab.layers.channel_heads import ChannelARHead, ParallelChannelHead

C, B, D = 6, 16, 24


def head(order=None, seed=0):
    torch.manual_seed(seed)
    h = ChannelARHead(C, B, D, width=32, depth=2, num_heads=4, order=order).eval()
    # adaLN starts at zero (every block the identity); give it weights so that the checks see real attention
    with torch.no_grad():
        for block in [*h.channel_blocks, h.channel_final]:
            block.adaLN_modulation[1].weight.normal_(std=0.05)
    return h


def data(seed=1, m=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, D, generator=g), torch.randint(0, B, (m, C), generator=g)


def test_changing_a_slot_input_leaves_the_earlier_slots_unchanged():
    h, (z, q) = head(order=[3, 0, 5, 1, 4, 2]), data()
    base = h.logits(z, q)
    for j in range(C - 1):  # the input of slot j + 1 is the index of slot j's channel
        q2 = q.clone()
        q2[:, h.order[j]] = (q2[:, h.order[j]] + 1) % B
        changed = h.logits(z, q2)
        assert torch.allclose(changed[:, : j + 1], base[:, : j + 1], atol=1e-6)
        assert not torch.allclose(changed[:, j + 1:], base[:, j + 1:], atol=1e-4)


@pytest.mark.parametrize("use_cache", [True, False])
def test_sampler_logits_equal_the_teacher_forced_ones(use_cache):
    h, (z, _) = head(order=[2, 4, 0, 1, 5, 3]), data()
    record = []
    q = h.sample(z, temperature=1.0, generator=torch.Generator().manual_seed(0), use_cache=use_cache, record=record)
    assert q.shape == (5, C) and q.dtype == torch.long and 0 <= q.min() and q.max() < B
    assert torch.allclose(torch.stack(record, 1), h.logits(z, q), atol=1e-5)


def test_cached_and_recomputed_sampling_give_the_same_tokens():
    h, (z, _) = head(), data(m=32)
    a, b = [], []
    qa = h.sample(z, 1.0, torch.Generator().manual_seed(3), use_cache=True, record=a)
    qb = h.sample(z, 1.0, torch.Generator().manual_seed(3), use_cache=False, record=b)
    assert torch.equal(qa, qb) and torch.allclose(torch.stack(a), torch.stack(b), atol=1e-5)
    assert torch.equal(h.sample(z, 0.0), h.sample(z, 0.0, use_cache=False))  # greedy


def test_a_shuffled_order_is_the_identity_order_with_relabelled_slots():
    order = [4, 1, 5, 0, 2, 3]
    shuffled, plain = head(order=order), head(order=None)
    plain.load_state_dict({**shuffled.state_dict(), "order": plain.order})
    z, q = data()
    # the identity-order head fed channels permuted by `order` is the shuffled head, slot for slot
    assert torch.allclose(shuffled.logits(z, q), plain.logits(z, q[:, order]), atol=1e-6)
    qs = shuffled.sample(z, 1.0, torch.Generator().manual_seed(5))
    qp = plain.sample(z, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(qs[:, order], qp)  # the sampler returns channel order: slot k holds channel order[k]


def test_initial_loss_is_near_ln_b_and_the_parallel_head_ignores_the_other_channels():
    torch.manual_seed(0)
    z, q = data(m=256)
    ar = ChannelARHead(C, B, D, width=32, depth=2, num_heads=4)
    assert math.log(B) - 0.1 < ar.loss(z, q).item() < math.log(B) + 1.0
    par = ParallelChannelHead(C, B, D, width=32, depth=2)
    q2 = q.clone()
    q2[:, 0] = (q2[:, 0] + 1) % B
    assert torch.equal(par.logits(z, q), par.logits(z, q2))
    assert par.sample(z, 0.0).shape == (256, C)


def test_bad_input():
    with pytest.raises(GenlabError, match="is not a permutation of the 6 channels"):
        ChannelARHead(C, B, D, order=[0, 1, 2, 3, 4, 4])
    h, (z, q) = head(), data()
    with pytest.raises(GenlabError, match=r"takes z \(M, 24\)"):
        h.logits(torch.zeros(5, 7), q)
    with pytest.raises(GenlabError, match=r"integer indices \(M, 6\)"):
        h.loss(z, q[:, :3])
