"""NAR (next-neighbour AR) and the raster AR baseline: orders, masks, no-leak, KV-cached sampling == teacher
forcing, degenerate equivalence with raster AR, CFG plumbing, the ar_tokens objective, pipelines (NAR spec §10)."""

import math
import os

import pytest
import torch
from diffusers import DiffusionPipeline

import genlab  # noqa: F401  (registers the pipelines on diffusers)
from genlab.errors import GenlabError
from genlab.layers import KVCache, TransformerBlock, drop_labels, sequence_rope
from genlab.models import ARModel, NARModel, generate_tokens
from genlab.models.sampling import filter_logits
from genlab.pipelines import ARPipeline, NARPipeline
from genlab.schedulers import GuidanceSchedule, apply_cfg
from genlab.schedulers.orders import (causal_mask, grid_coordinates, level_ids, manhattan_distance, proximity_mask,
                                      raster_levels, ring_levels)
from genlab.tokenizers import VQTokenizer
from genlab.training.objectives import ARTokensObjective

V = 32


def randomize(model, seed=0, std=0.2):
    """Trained-looking weights: the zero-initialised heads would make every logit 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def nar(grid, seed=0, **kw):
    kw.setdefault("pos_embed", "rope" if len(grid) == 2 else "learned")
    return randomize(NARModel.from_preset("test", grid_size=grid, vocab_size=V, num_classes=3, **kw), seed)


def ar(grid, seed=0, **kw):
    return randomize(ARModel.from_preset("test", grid_size=grid, vocab_size=V, num_classes=3, **kw), seed)


def count_forwards(model):
    calls = []
    original = model.decode_step

    def wrapped(tokens, positions, labels, caches, targets):
        calls.append(labels.shape[0])
        return original(tokens, positions, labels, caches, targets)

    model.decode_step = wrapped
    return calls


# ---------------------------------------------------------------- 1. orders
@pytest.mark.parametrize("grid", [(8, 8), (16, 16), (3, 5), (5, 3), (1, 7), (4, 16, 16), (2, 4, 4), (2, 3, 5)])
def test_ring_levels_partition_sizes_and_neighbours(grid):
    levels = ring_levels(grid)
    n = math.prod(grid)
    assert sorted(torch.cat(levels).tolist()) == list(range(n))
    assert len(levels) == sum(grid) - len(grid) + 1  # H+W-1, T+H+W-2
    if len(grid) == 2:
        h, w = grid
        assert [len(lv) for lv in levels] == [min(k + 1, h, w, h + w - 1 - k) for k in range(h + w - 1)]
    coords, lev = grid_coordinates(grid), level_ids(levels)
    index = {tuple(c): i for i, c in enumerate(coords.tolist())}
    for k, lv in enumerate(levels):
        assert lv.tolist() == sorted(lv.tolist())  # rows ascend inside a level
        for i in lv.tolist():
            assert manhattan_distance(grid)[i] == k
            if k:
                c = coords[i].tolist()
                preds = [index[tuple(c[:a] + [c[a] - 1] + c[a + 1:])] for a in range(len(grid)) if c[a] > 0]
                assert any(lev[p] == k - 1 for p in preds)


def test_level_counts_and_raster():
    assert [len(ring_levels(g)) for g in [(8, 8), (16, 16), (4, 16, 16), (2, 4, 4)]] == [15, 31, 34, 8]
    assert [lv.tolist() for lv in raster_levels((2, 2))] == [[0], [1], [2], [3]]
    assert [lv.tolist() for lv in ring_levels((3, 3), start=(1, 1))] == [[4], [1, 3, 5, 7], [0, 2, 6, 8]]


@pytest.mark.parametrize("grid,expected", [((8, 8), 15), ((16, 16), 31), ((4, 16, 16), 34), ((2, 4, 4), 8)])
def test_sampler_forward_count_equals_levels(grid, expected):
    model = NARModel.from_preset("test", grid_size=grid, vocab_size=16, num_classes=3, depth=1,
                                 pos_embed="rope" if len(grid) == 2 else "learned").eval()
    calls = count_forwards(model)
    out = generate_tokens(model, torch.tensor([1]), 1.0, generator=torch.Generator().manual_seed(0))
    assert len(calls) == out.num_forward == expected
    assert out.tokens.shape == (1, math.prod(grid))


@pytest.mark.parametrize("bad", [dict(grid=(0, 4)), dict(grid=(4, -1)), dict(grid=()), dict(grid=(2, 2, 2, 2)),
                                 dict(grid=(4, 4), start=(4, 0)), dict(grid=(4, 4), start=(0, -1)),
                                 dict(grid=(4, 4), start=(0,))])
def test_bad_orders_raise(bad):
    with pytest.raises(GenlabError):
        ring_levels(**bad)
    with pytest.raises(GenlabError):
        proximity_mask(**bad)


def test_bad_model_configs_raise():
    for kw in [dict(grid_size=(0, 4)), dict(grid_size=(4,)), dict(grid_size=(4, 4), pos_embed="sincos"),
               dict(grid_size=(2, 4, 4), pos_embed="rope"), dict(grid_size=(4, 4), vocab_size=0)]:
        with pytest.raises(GenlabError):
            NARModel.from_preset("test", **{"vocab_size": V, **kw})
    with pytest.raises(GenlabError):
        ARModel.from_preset("test", grid_size=(4, -4))
    with pytest.raises(GenlabError):
        NARModel.from_preset("huge")


# ---------------------------------------------------------------- 2. masks
@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (2, 3, 4)])
def test_proximity_mask_invariants(grid):
    m = proximity_mask(grid, num_cond=1)
    d = manhattan_distance(grid)
    img = m[1:, 1:]
    assert torch.equal(img, d[None, :] <= d[:, None])
    same = d[None, :] == d[:, None]
    assert torch.equal(img & same, (img & same).T) and bool(img[same].all())  # bidirectional inside a level
    assert bool(m[1:, 0].all()) and not bool(m[0, 1:].any()) and bool(m[0, 0])


def test_proximity_mask_of_a_row_is_causal():
    assert torch.equal(proximity_mask((1, 9), num_cond=1), causal_mask(10))
    assert torch.equal(proximity_mask((9, 1), num_cond=2), causal_mask(11))


# ---------------------------------------------------------------- 3. no leakage
@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (2, 3, 3)])
def test_no_leak_from_same_or_later_levels(grid):
    model = nar(grid)
    g = torch.Generator().manual_seed(1)
    n = math.prod(grid)
    x = torch.randint(0, V, (2, n), generator=g)
    y = torch.tensor([0, 2])
    base = model(x, y)
    d = manhattan_distance(grid)
    for k in range(int(d.max()) + 1):
        x2 = x.clone()
        later = d >= k
        x2[:, later] = torch.randint(0, V, (2, int(later.sum())), generator=g)
        out = model(x2, y)
        assert (out[:, d == k] - base[:, d == k]).abs().max() < 1e-5
        if k > 0:  # and the logits do depend on earlier levels
            x3 = x.clone()
            x3[:, d == k - 1] = (x3[:, d == k - 1] + 1) % V
            assert (model(x3, y)[:, d == k] - base[:, d == k]).abs().max() > 1e-4


# ---------------------------------------------------------------- 4. KV-cached sampling == teacher forcing
@pytest.mark.parametrize("make,grid", [(nar, (4, 4)), (nar, (3, 5)), (nar, (2, 3, 3)), (ar, (3, 3))])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_cached_sampler_matches_teacher_forced_forward(make, grid, scale):
    model = make(grid)
    y = torch.tensor([0, 1, 2])
    out = generate_tokens(model, y, scale, temperature=0, return_logits=True)
    assert out.num_forward == len(model.levels)
    with torch.no_grad():
        full = model(out.tokens, y)
        if scale != 1.0:
            full = apply_cfg(model(out.tokens, torch.full_like(y, model.null_class)), full, scale)
    torch.testing.assert_close(out.logits, full, atol=1e-4, rtol=1e-4)
    assert torch.equal(out.tokens, full.argmax(-1))


def test_kv_cache_block_matches_full_block():
    torch.manual_seed(0)
    block = TransformerBlock(32, 4).eval()
    x = torch.randn(2, 6, 32)
    rope = sequence_rope((5,), 8, num_cond=1, cond_rope="identity")
    mask = causal_mask(6)
    full = block(x, rope, mask)
    cache = KVCache(2, 4, 6, 8)
    for order in ([0, 1], [2], [3, 4, 5]):
        pos = torch.tensor(order)
        keys = torch.cat([cache.filled_positions, pos])  # the cache appends in writing order
        step = block(x[:, pos], rope[pos], mask[pos][:, keys], cache, pos)
        torch.testing.assert_close(step, full[:, pos], atol=1e-5, rtol=1e-5)
    assert cache.length == 6 and cache.filled_positions.tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="overflow"):
        cache.update(torch.zeros(2, 4, 1, 8), torch.zeros(2, 4, 1, 8), torch.tensor([0]))


def test_kv_cache_in_writing_order_matches_full_block_for_a_scattered_order():
    """Entries written out of raster order (as NAR's rings are) still give the full block's outputs."""
    torch.manual_seed(0)
    block = TransformerBlock(32, 4).eval()
    x = torch.randn(2, 7, 32)
    rope = sequence_rope((2, 3), 8, num_cond=1, cond_rope="identity")
    mask = proximity_mask((2, 3), num_cond=1)
    full = block(x, rope, mask)
    cache = KVCache(2, 4, 7, 8)
    for level in ([0], [1], [2, 4], [3, 5], [6]):  # class token, then the rings of a 2x3 grid (raster + 1)
        pos = torch.tensor(level)
        keys = torch.cat([cache.filled_positions, pos])
        step = block(x[:, pos], rope[pos], mask[pos][:, keys], cache, pos)
        torch.testing.assert_close(step, full[:, pos], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- 5. degenerate equivalence with raster AR
def test_one_row_grid_equals_plain_causal_ar():
    n = 7
    model = nar((1, n))
    with torch.no_grad():  # vertical head off: the first token's argmax is then the horizontal head's too
        model.extra_outputs[0].weight.zero_()
    base = ARModel.from_preset("test", grid_size=(1, n), vocab_size=V, num_classes=3).eval()
    missing, unexpected = base.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(k.startswith("extra_") for k in unexpected)
    x = torch.randint(0, V, (3, n), generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 3])
    a, b = model(x, y), base(x, y)
    torch.testing.assert_close(a[:, 1:], b[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[:, 0], b[:, 0] / 2, atol=1e-5, rtol=1e-5)  # (R + 0) / 2 at the class slot
    s1 = generate_tokens(model, y[:2], 2.0, temperature=0)
    s2 = generate_tokens(base, y[:2], 2.0, temperature=0)
    assert torch.equal(s1.tokens, s2.tokens) and (s1.num_forward, s2.num_forward) == (n, n)


def test_nar_trunk_with_causal_mask_reproduces_raster_ar():
    model = nar((3, 3))
    base = ARModel.from_preset("test", grid_size=(3, 3), vocab_size=V, num_classes=3).eval()
    base.load_state_dict(model.state_dict(), strict=False)
    x = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2])
    pos = torch.arange(10)
    with torch.no_grad():
        hidden = model.head_hidden_states(model.embed(x, y, pos), pos, causal_mask(10))
        logits = model.head_logits(hidden)[:, 0, :9]  # horizontal head, raster shift, no mixing
    torch.testing.assert_close(logits, base(x, y), atol=1e-5, rtol=1e-5)


def test_mixed_logits_average_the_valid_heads():
    model = nar((3, 3))
    x = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1])
    mixed = model(x, y)
    r, b = model.full_logits(x, y, heads=[0]), model.full_logits(x, y, heads=[1])
    # (0,0): both heads at the class slot; row 0: R only; column 0: B only; interior: (R + B) / 2
    pos = torch.arange(10)
    with torch.no_grad():
        per_head = model.head_logits(model.head_hidden_states(model.embed(x, y, pos), pos, model.attention_mask))
    torch.testing.assert_close(mixed[0, 0], per_head[0, :, 0].mean(0))
    torch.testing.assert_close(mixed[0, 1], per_head[0, 0, 1])  # (0,1) from R of (0,0) at seq pos 1
    torch.testing.assert_close(mixed[0, 3], per_head[0, 1, 1])  # (1,0) from B of (0,0)
    torch.testing.assert_close(mixed[0, 4], (per_head[0, 0, 4] + per_head[0, 1, 2]) / 2)  # (1,1): R(1,0), B(0,1)
    torch.testing.assert_close(mixed[0, 4], (r[0, 4] + b[0, 4]) / 2)


# ---------------------------------------------------------------- 6. CFG plumbing
def test_cfg_batches_and_null_class():
    model = nar((3, 3))
    assert model.null_class == 3
    calls = count_forwards(model)
    generate_tokens(model, torch.tensor([0, 1]), 1.0, generator=torch.Generator().manual_seed(0))
    assert set(calls) == {2}
    calls.clear()
    generate_tokens(model, torch.tensor([0, 1]), 2.0, generator=torch.Generator().manual_seed(0))
    assert set(calls) == {4}


def test_label_drop_rate():
    labels = torch.zeros(10_000, dtype=torch.long)
    dropped = drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) <= {0, 10}
    assert abs((dropped == 10).float().mean().item() - 0.1) < 0.02


def test_guidance_switched_off_equals_cond_only_and_keeps_both_halves():
    model = nar((3, 3))
    y = torch.tensor([0, 2])
    nowhere = GuidanceSchedule(4.0, "interval", (0.0, 1e-9))  # active, but scale 1 at every step
    calls = count_forwards(model)
    a = generate_tokens(model, y, nowhere, generator=torch.Generator().manual_seed(3), return_logits=True)
    assert set(calls) == {4}  # both halves still run (uncond cache in sync)
    b = generate_tokens(model, y, 1.0, generator=torch.Generator().manual_seed(3), return_logits=True)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    late = GuidanceSchedule(4.0, "interval", (0.5, 1.0))  # guided only for the second half
    c = generate_tokens(model, y, late, temperature=0, return_logits=True)
    with torch.no_grad():
        cond, unc = model(c.tokens, y), model(c.tokens, torch.full_like(y, 3))
    lev = level_ids(model.levels)
    done = torch.tensor([sum(len(lv) for lv in model.levels[:k]) for k in range(len(model.levels))])[lev] / 9
    expected = torch.where((done > 0.5)[None, :, None], apply_cfg(unc, cond, 4.0), cond)
    torch.testing.assert_close(c.logits, expected, atol=1e-4, rtol=1e-4)


def test_sampling_filters_and_generator_determinism():
    logits = torch.tensor([[[3.0, 2.0, 1.0, 0.0]]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept[0, 0].tolist() == [True, True, False, False]
    model = nar((3, 3))
    y = torch.tensor([0, 1])
    s1 = generate_tokens(model, y, 2.0, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(5)).tokens
    s2 = generate_tokens(model, y, 2.0, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(5)).tokens
    assert torch.equal(s1, s2)
    with pytest.raises(GenlabError):
        generate_tokens(model, y, 2.0, top_p=0.0)
    with pytest.raises(GenlabError):
        generate_tokens(model, y, 2.0, temperature=-1)


# ---------------------------------------------------------------- objective
@pytest.mark.parametrize("cls", [ARModel, NARModel])
def test_ar_tokens_objective_initial_loss_is_log_vocab(cls):
    tok = VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=64)
    model = cls.from_preset("test", grid_size=(4, 4), vocab_size=64, num_classes=3)
    objective = ARTokensObjective(tok, label_dropout=0.1)
    batch = {"pixel_values": torch.rand(8, 1, 8, 8) * 2 - 1, "class_labels": torch.randint(0, 3, (8,))}
    loss = objective(model, batch, torch.Generator().manual_seed(0))["loss"]
    assert abs(loss.item() - math.log(64)) < 0.1
    loss.backward()
    assert model.output.weight.grad is not None and model.output.weight.grad.abs().sum() > 0


def test_bad_tokens_and_labels_raise():
    model = nar((3, 3))
    with pytest.raises(GenlabError):
        model(torch.zeros(2, 8, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(GenlabError):
        model(torch.full((2, 9), V), torch.tensor([0, 1]))
    with pytest.raises(GenlabError):
        model(torch.zeros(2, 9, dtype=torch.long), torch.tensor([0, 4]))


# ---------------------------------------------------------------- pipelines
@pytest.mark.parametrize("pipe_cls,model_cls", [(ARPipeline, ARModel), (NARPipeline, NARModel)])
def test_pipeline_save_load_round_trip(tmp_path, pipe_cls, model_cls):
    tok = VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=V)
    model = randomize(model_cls.from_preset("test", grid_size=(4, 4), vocab_size=V, num_classes=3,
                                            class_names=["a", "b", "c"]))
    pipe = pipe_cls(transformer=model, image_tokenizer=tok)
    kw = dict(class_labels=[0, "c"], guidance_scale=2.0, top_k=10, output_type="pt")
    a = pipe(generator=torch.Generator().manual_seed(0), **kw).images
    assert a.shape == (2, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert pipe.last_num_forward == (16 if pipe_cls is ARPipeline else 7)
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is pipe_cls and type(loaded.transformer) is model_cls
    b = loaded(generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.equal(a, b)
    images = loaded(class_labels=1, generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 1 and images[0].size == (8, 8)


def test_pipeline_bad_input():
    tok = VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=V)
    pipe = NARPipeline(transformer=nar((4, 4)), image_tokenizer=tok)
    for kw in [dict(class_labels=3), dict(class_labels=-1), dict(class_labels=None), dict(class_labels="zebra"),
               dict(class_labels=0, output_type="jpg"), dict(class_labels=0, top_p=1.5),
               dict(class_labels=0, guidance_scale=-1)]:
        with pytest.raises(GenlabError):
            pipe(**kw)
    wrong = NARPipeline(transformer=nar((4, 4)), image_tokenizer=VQTokenizer.from_preset("tiny", in_channels=1))
    with pytest.raises(GenlabError, match="codebook"):
        wrong(class_labels=0)


# ---------------------------------------------------------------- recipes
@pytest.mark.parametrize("kind", ["ar", "nar"])
def test_recipe_trains_two_steps_and_saves_a_loadable_pipeline(tmp_path, kind):
    from genlab.training.recipe import load_recipe, run_recipe

    VQTokenizer.from_preset("tiny", in_channels=1, codebook_size=64).save_pretrained(tmp_path / "vq")
    recipe = load_recipe(f"{kind}-digits", [f"tokenizer.path={tmp_path / 'vq'}", "model.depth=1",
                                           "model.hidden_size=32", "train.steps=2", "train.batch_size=8",
                                           "train.checkpoint_every=2"])
    summary = run_recipe(recipe, str(tmp_path / "out"), str(tmp_path / "run"))
    assert summary["step"] == 2 and abs(summary["loss"] - math.log(64)) < 0.2
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "out")
    assert type(pipe).__name__ == {"ar": "ARPipeline", "nar": "NARPipeline"}[kind]
    assert pipe.transformer.grid == (8, 8) and pipe.transformer.config.vocab_size == 64
    images = pipe(class_labels=[0, 9], guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2 and pipe.last_num_forward == {"ar": 64, "nar": 15}[kind]


def test_recipe_rejects_a_continuous_tokenizer(tmp_path):
    from genlab.training.recipe import load_recipe, run_recipe

    recipe = load_recipe("nar-digits", ["tokenizer={type: pixels}", "train.steps=1"])
    with pytest.raises(GenlabError, match="VQ tokenizer"):
        run_recipe(recipe, str(tmp_path / "out"), str(tmp_path / "run"))


# ---------------------------------------------------------------- official weights
def official_rope_2d(grid: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """`precompute_freqs_cis_2d` of NAR-images gpt.py (cls_token_num=1) as a complex (1 + grid^2, head_dim/2)."""
    half = head_dim // 2
    freqs = 1.0 / (base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    freqs = torch.outer(torch.arange(grid).float(), freqs)
    grid_freqs = torch.cat([freqs[:, None, :].expand(-1, grid, -1), freqs[None, :, :].expand(grid, -1, -1)], -1)
    table = torch.polar(torch.ones_like(grid_freqs), grid_freqs).flatten(0, 1)
    return torch.cat([torch.zeros(1, half, dtype=table.dtype), table])


def test_official_rope_layout_maps_by_the_conversion_permutation():
    from genlab.models.nar import official_rope_permutation

    head_dim = 16
    perm = official_rope_permutation(head_dim)
    pair_perm = perm[0::2] // 2
    ours = sequence_rope((4, 4), head_dim, num_cond=1, cond_rope="zero")
    torch.testing.assert_close(ours, official_rope_2d(4, head_dim)[:, pair_perm], atol=1e-5, rtol=1e-5)
    assert sorted(perm.tolist()) == list(range(head_dim))


def test_convert_official_state_dict_round_trip():
    """Official names (layers.{depth} = medusa block, wqkv in the official RoPE channel order) load exactly."""
    from genlab.models.nar import convert_official_state_dict, official_rope_permutation

    model = nar((4, 4))
    depth, heads, dim = 2, 4, 64
    inverse = torch.argsort(official_rope_permutation(dim // heads))
    names = {"attn.qkv": "attention.wqkv", "attn.proj": "attention.wo", "mlp.w1": "feed_forward.w1",
             "mlp.w2": "feed_forward.w2", "mlp.w3": "feed_forward.w3"}
    official = {}
    for key, value in model.state_dict().items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        if "attention.wqkv" in key:
            q, k, v = value.split(dim)
            q, k = (t.view(heads, dim // heads, dim)[:, inverse].reshape(dim, dim) for t in (q, k))
            value = torch.cat([q, k, v])
        key = key.replace("extra_blocks.0", f"layers.{depth}").replace("extra_norms.0", "medusa_norm")
        official[key.replace("extra_outputs.0", "medusa_output")] = value
    converted = convert_official_state_dict(official, depth, heads)
    assert converted.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(converted[key], value), key


# ---------------------------------------------------------------- video
def video_pipe(grid=(3, 2, 2)):
    from genlab.pipelines import NARVideoPipeline

    tok = VQTokenizer.from_preset("tiny", in_channels=3, codebook_size=V)
    return NARVideoPipeline(transformer=nar(grid), image_tokenizer=tok)


def test_video_pipeline_frames_forward_count_and_round_trip(tmp_path):
    from genlab.pipelines import GenlabVideoOutput, NARVideoPipeline

    pipe = video_pipe()
    out = pipe(class_labels=[0, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, GenlabVideoOutput) and len(out.frames) == 2
    assert all(len(clip) == 3 and clip[0].size == (4, 4) and clip[0].mode == "RGB" for clip in out.frames)
    assert pipe.last_num_forward == 3 + 2 + 2 - 2
    full = pipe(class_labels=1, output_type="pt", generator=torch.Generator().manual_seed(1)).frames
    part = pipe(class_labels=1, num_frames=2, output_type="pt", generator=torch.Generator().manual_seed(1)).frames
    assert full.shape == (1, 3, 3, 4, 4) and torch.equal(part, full[:, :2])  # a prefix of the same clip
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is NARVideoPipeline
    again = loaded(class_labels=1, output_type="pt", generator=torch.Generator().manual_seed(1)).frames
    assert torch.equal(again, full)


def test_video_pipeline_bad_input():
    pipe = video_pipe()
    for kw, match in [(dict(num_frames=4), "beyond what this model was trained for"), (dict(num_frames=0), "num_frames"),
                      (dict(class_labels=3), "out of range")]:
        with pytest.raises(GenlabError, match=match):
            pipe(**{"class_labels": 0, **kw})
    with pytest.raises(GenlabError, match="3-D token grids"):
        video_pipe(grid=(4, 4))(class_labels=0)


def test_save_video_writes_an_animated_gif(tmp_path):
    import PIL.Image

    from genlab.utils import save_video

    clip = video_pipe()(class_labels=0, generator=torch.Generator().manual_seed(0)).frames[0]
    path = save_video(clip, str(tmp_path / "clip.gif"), fps=5)
    with PIL.Image.open(path) as gif:
        assert gif.is_animated and gif.n_frames == len(clip) and gif.info["duration"] == 200
    with pytest.raises(GenlabError, match=".gif"):
        save_video(clip, str(tmp_path / "clip.avi"))  # GIF and MP4 only
    mp4 = save_video(clip, str(tmp_path / "clip.mp4"), fps=5)  # the [video] extra, installed with [dev]
    assert os.path.getsize(mp4) > 0


def test_video_recipe_trains_on_per_frame_ids(tmp_path):
    from genlab.training.recipe import load_recipe, run_recipe

    VQTokenizer.from_preset("tiny-f4", in_channels=3, codebook_size=64).save_pretrained(tmp_path / "vq")
    recipe = load_recipe("nar-shapes-video", [f"tokenizer.path={tmp_path / 'vq'}", "model.depth=1",
                                              "model.hidden_size=32", "train.steps=2", "train.batch_size=4",
                                              "train.checkpoint_every=2", "data.num_samples=16",
                                              "data.num_frames=2", "data.image_size=16"])
    summary = run_recipe(recipe, str(tmp_path / "out"), str(tmp_path / "run"))
    assert summary["step"] == 2 and abs(summary["loss"] - math.log(64)) < 0.3
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "out")
    assert type(pipe).__name__ == "NARVideoPipeline" and pipe.transformer.grid == (2, 4, 4)
    clips = pipe(class_labels=["circle", 1], generator=torch.Generator().manual_seed(0)).frames
    assert len(clips) == 2 and len(clips[0]) == 2 and pipe.last_num_forward == 2 + 4 + 4 - 2


def test_sampler_callback_sees_each_level_fill_in():
    model = nar((3, 4))
    seen = []
    out = generate_tokens(model, torch.tensor([0, 1]), 2.0, generator=torch.Generator().manual_seed(0),
                          callback=lambda step, level, tokens: seen.append((step, level.tolist(), tokens.clone())))
    assert [s for s, _, _ in seen] == list(range(len(model.levels))) == list(range(3 + 4 - 1))
    for step, level, partial in seen:
        filled = (partial[0] >= 0).nonzero().flatten().tolist()
        assert filled == sorted(i for lv in model.levels[: step + 1] for i in lv.tolist())
        assert torch.equal(partial[:, filled], out.tokens[:, filled])


@pytest.mark.parametrize("k", [0, 1, 5, 100])
def test_guidance_by_token_count_follows_the_official_rule(k, monkeypatch):
    """--cfg-interval k of the official NAR sampler: a step is guided iff at most k tokens exist before it (so the
    first step always is); both branches keep running. Checked step by step against the rule's definition."""
    from genlab.models import sampling

    pipe = NARPipeline(transformer=nar((4, 4)), image_tokenizer=VQTokenizer.from_preset("tiny", in_channels=1,
                                                                                         codebook_size=V))
    pipe.set_progress_bar_config(disable=True)
    seen = []
    real = sampling.cfg_combine
    monkeypatch.setattr(sampling, "cfg_combine", lambda out, scale: seen.append((out.shape[0], scale)) or real(out, scale))
    pipe(class_labels=[0, 1], guidance_scale=3.0, guidance_max_tokens=k, generator=torch.Generator().manual_seed(0))
    done = [sum(len(lv) for lv in pipe.transformer.levels[:i]) for i in range(len(pipe.transformer.levels))]
    assert [scale for _, scale in seen] == [3.0 if d <= k else 1.0 for d in done]
    assert all(rows == 4 for rows, _ in seen)  # [uncond ; cond] at every step, guided or not
    with pytest.raises(GenlabError, match="not both"):
        pipe(class_labels=[0], guidance_interval=(0.1, 0.5), guidance_max_tokens=2)
    with pytest.raises(GenlabError, match="guidance_max_tokens"):
        pipe(class_labels=[0], guidance_max_tokens=-1)
