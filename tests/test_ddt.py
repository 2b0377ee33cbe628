"""DDT: model contract, init, sizes and key names, encoder-sharing policies and the statistic DP, the pipeline
(CFG gate, bit-exact sharing equivalences, call counts, saved DP schedules), bad input, the flow_ddt recipe.
Numbers refer to the checks of the DDT spec §10 (label dropout, 6, and RoPE shift invariance, 4, are in
test_layers; REPA, 9, comes with the REPA objective)."""

import json
import math
import random

import pytest
import torch
from diffusers import DiffusionPipeline

import genlab
from genlab.acceleration import (ReusePolicy, brute_force_statdp, schedule_cost, similarity_matrix, solve_statdp,
                                 statdp_steps_for_rate)
from genlab.errors import GenlabError
from genlab.models import DDTModel
from genlab.models.ddt import DDTOutput
from genlab.pipelines import DDTPipeline
from genlab.schedulers import FlowMatchScheduler
from genlab.tokenizers import PixelTokenizer
from genlab.training.objectives import FlowMatchingObjective

N_STEPS = 10


def tiny(**kw):
    return DDTModel.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3, **kw)


def trained_like(seed=0):
    """The test model with a non-zero final layer (at init v ≡ 0 would make every comparison trivial)."""
    torch.manual_seed(seed)
    model = tiny().eval()
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
    torch.nn.init.normal_(model.final_layer.adaLN_modulation[0].weight, std=0.1)
    return model


class CallCounter:
    """Forward-hook counters on the encoder path (s_embedder, encoder blocks) and the decoder path."""

    def __init__(self, model):
        self.counts = {"s_embedder": 0, "encoder_blocks": 0, "x_embedder": 0, "decoder_blocks": 0, "final_layer": 0}
        parts = {"s_embedder": [model.s_embedder], "encoder_blocks": model.encoder_blocks,
                 "x_embedder": [model.x_embedder], "decoder_blocks": model.decoder_blocks,
                 "final_layer": [model.final_layer]}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, mods in parts.items() for m in mods]

    def _hook(self, name):
        def hook(*_):
            self.counts[name] += 1
        return hook

    def reset(self):
        self.counts = dict.fromkeys(self.counts, 0)

    def remove(self):
        for h in self.handles:
            h.remove()


def make_pipe(model=None):
    pipe = DDTPipeline(transformer=model if model is not None else trained_like(), scheduler=FlowMatchScheduler(),
                       image_tokenizer=PixelTokenizer(in_channels=1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def final_latent(pipe, monkeypatch, **kwargs):
    """Run the pipeline and return the sample handed to the tokenizer (before clamping to images)."""
    seen = []
    decode = pipe.image_tokenizer.decode
    monkeypatch.setattr(pipe.image_tokenizer, "decode", lambda x: seen.append(x.clone()) or decode(x))
    pipe(output_type="pt", **kwargs)
    monkeypatch.setattr(pipe.image_tokenizer, "decode", decode)
    return seen[0]


# ---------------------------------------------------------------- 1-3: model
def test_contract_and_bit_identical_reuse_skips_the_encoder():  # check 1
    model = trained_like()
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 2, 3])  # 3 = the null class
    counter = CallCounter(model)
    v, z = model(x, t, y, return_dict=False)
    assert v.shape == x.shape and z.shape == (3, 16, 64)
    assert counter.counts == {"s_embedder": 1, "encoder_blocks": 3, "x_embedder": 1, "decoder_blocks": 1,
                              "final_layer": 1}
    counter.reset()
    v2, z2 = model(x, t, y, z, return_dict=False)
    assert torch.equal(v2, v) and z2 is z
    assert counter.counts["s_embedder"] == 0 and counter.counts["encoder_blocks"] == 0
    assert counter.counts["x_embedder"] == 1 and counter.counts["decoder_blocks"] == 1
    # the decoder sees t and the label only through z (spec pitfall 3): other t / labels, same z -> same v
    v3, _ = model(x, torch.rand(3), torch.tensor([1, 1, 1]), z, return_dict=False)
    assert torch.equal(v3, v)
    assert not torch.equal(model(x, torch.rand(3), y)[0], v)  # while a fresh encoder pass depends on t
    counter.remove()
    with pytest.raises(GenlabError, match="z must have shape"):
        model(x, t, y, z[:, :4])


def test_zero_output_at_init_and_initial_loss_is_E_x2_plus_1():  # check 2
    model = tiny()
    v, _ = model(torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 3]), return_dict=False)
    assert torch.equal(v, torch.zeros_like(v))
    # only the final layer is zero-initialised: block adaLN keeps PyTorch's default init (spec pitfall 6)
    assert all(b.adaLN_modulation[0].weight.abs().sum() > 0 for b in model.blocks)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 1, 8, 8, generator=g) * 2 - 1
    objective = FlowMatchingObjective(FlowMatchScheduler(), label_dropout=0.1)  # takes DDT's (v, z) output
    loss = objective(model, {"pixel_values": x, "class_labels": torch.zeros(512, dtype=torch.long)}, g)["loss"]
    assert abs(loss.item() - (x.pow(2).mean().item() + 1)) < 0.02


def test_parameter_counts_and_official_key_names_on_meta():  # check 3
    expected = {"B": 130.26e6, "L": 457.65e6, "XL": 674.65e6}
    for name, count in expected.items():
        with torch.device("meta"):
            model = DDTModel.from_preset(name, sample_size=32, in_channels=4, patch_size=2, num_classes=1000)
        assert abs(model.num_parameters / count - 1) < 1e-3, (name, model.num_parameters)
    split = {n: (DDTModel.PRESETS[n]["num_encoder_layers"], DDTModel.PRESETS[n]["num_decoder_layers"])
             for n in expected}
    assert split == {"B": (8, 4), "L": (20, 4), "XL": (22, 6)}
    with torch.device("meta"):
        xl = DDTModel.from_preset("XL", sample_size=32, in_channels=4, patch_size=2, num_classes=1000)
    keys = set(xl.state_dict())
    for key in ["x_embedder.proj.weight", "s_embedder.proj.bias", "t_embedder.mlp.0.weight", "t_embedder.mlp.2.bias",
                "y_embedder.embedding_table.weight", "final_layer.adaLN_modulation.0.weight",
                "final_layer.linear.weight"]:
        assert key in keys, key
    block = {"norm1.weight", "attn.qkv.weight", "attn.q_norm.weight", "attn.k_norm.weight", "attn.proj.weight",
             "attn.proj.bias", "norm2.weight", "mlp.w1.weight", "mlp.w2.weight", "mlp.w3.weight",
             "adaLN_modulation.0.weight", "adaLN_modulation.0.bias"}
    block_keys = {f"blocks.{i}.{b}" for i in range(28) for b in block}  # 22 encoder + 6 decoder blocks, one list
    assert {k for k in keys if k.startswith("blocks.")} == block_keys
    assert xl.state_dict()["y_embedder.embedding_table.weight"].shape == (1001, 1152)  # null row
    assert xl.state_dict()["blocks.0.mlp.w1.weight"].shape == (3072, 1152)  # SwiGLU floor(8 D / 3)
    assert xl.encoder_blocks[0] is xl.blocks[0] and xl.decoder_blocks[0] is xl.blocks[22]  # encoder numbered first
    assert not any("rope" in k for k in keys)  # RoPE is derived from the config, not saved
    assert abs(DDTModel.from_preset("test", sample_size=16, patch_size=4).num_parameters / 0.33e6 - 1) < 0.01


def test_bad_model_configs():  # check 4 (head dim) and friends
    with pytest.raises(GenlabError, match="divisible by 4"):
        DDTModel(hidden_size=60, num_heads=6)  # head dim 10
    with pytest.raises(GenlabError, match="patch_size"):
        DDTModel(sample_size=10, patch_size=4)
    with pytest.raises(GenlabError, match="unknown DDT preset"):
        DDTModel.from_preset("huge")
    with pytest.raises(GenlabError, match="encoder and one decoder"):
        DDTModel(num_decoder_layers=0)
    with pytest.raises(GenlabError, match="expects x of shape"):
        tiny()(torch.randn(2, 3, 8, 8), torch.rand(2), torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------- 5: schedule and CFG gate (mock model)
class ConstantDDT(DDTModel):
    """Mock: velocity 1 for conditional rows and 0 for unconditional ones; records what it is called with."""

    def forward(self, x, t, class_labels, z=None):
        self.calls.append((t.clone(), class_labels.clone(), z is None))
        v = (class_labels != self.null_class).to(x.dtype).view(-1, 1, 1, 1).expand_as(x).clone()
        return DDTOutput(sample=v, z=torch.zeros(x.shape[0], 16, 64) if z is None else z)


def test_grid_and_cfg_gate_with_a_mock_model(monkeypatch):
    model = ConstantDDT.from_preset("test", sample_size=8, in_channels=1, patch_size=2, num_classes=3)
    model.calls = []
    pipe = DDTPipeline(transformer=model, scheduler=FlowMatchScheduler(shift=2.0, last_step=0.04),
                       image_tokenizer=PixelTokenizer(in_channels=1))
    pipe.set_progress_bar_config(disable=True)
    velocities = []
    step = pipe.scheduler.step
    monkeypatch.setattr(pipe.scheduler, "step", lambda v, t, x: velocities.append(v.clone()) or step(v, t, x))
    pipe(class_labels=[0, 2], num_inference_steps=8, guidance_scale=3.0, guidance_interval=(0.25, 0.75),
         output_type="pt", sharing="uniform", refresh_rate=3)
    grid = pipe.scheduler.time_grid(8)
    assert len(grid) == 9 and grid[0] == 0 and grid[-1] == 1 and bool((grid[1:] > grid[:-1]).all())
    times = [float(t[0]) for t, _, _ in model.calls]
    torch.testing.assert_close(torch.tensor(times, dtype=torch.float64), grid[:-1], atol=1e-7, rtol=0)  # shifted grid
    for (t, labels, _), v in zip(model.calls, velocities):
        assert labels.tolist() == [3, 3, 0, 2]  # [uncond ; cond] at every step, also outside the interval (pitfall 13)
        expected = 3.0 if 0.25 < float(t[0]) < 0.75 else 1.0  # strict open interval
        assert torch.equal(v, torch.full_like(v, expected))
    assert any(0.25 < x < 0.75 for x in times) and any(not 0.25 < x < 0.75 for x in times)
    assert [fresh for _, _, fresh in model.calls] == [i % 3 == 0 for i in range(8)]


# ---------------------------------------------------------------- 7: sharing equivalences and call counts
def reference_sample(model, x, labels, grid, scale, interval, key_steps, retime=False):
    """The spec's sampling loop written out independently of the pipeline: Euler, doubled CFG batch, shared z
    (retime: share the encoder state h_E instead and rebuild z at each step's t)."""
    null = torch.full_like(labels, model.null_class)
    z = h = None
    for i in range(len(grid) - 1):
        t = float(grid[i])
        if i in key_steps:
            z = h = None
        inputs = (torch.cat([x, x]), torch.full((2 * len(x),), t), torch.cat([null, labels]))
        if retime:
            out = model(*inputs, encoder_state=h)
            v2, h = out.sample, out.encoder_state
        else:
            v2, z = model(*inputs, z, return_dict=False)
        v_u, v_c = v2.chunk(2)
        v = v_u + scale * (v_c - v_u) if interval[0] < t < interval[1] else v_c
        x = x + float(grid[i + 1] - grid[i]) * v
    return x


def test_sharing_equivalences_and_encoder_decoder_call_counts(monkeypatch):
    pipe = make_pipe()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = dict(class_labels=[0, 2], num_inference_steps=N_STEPS, guidance_scale=2.0, guidance_interval=(0.35, 1.0),
              latents=noise)
    grid = pipe.scheduler.time_grid(N_STEPS)
    with torch.no_grad():
        ref = reference_sample(pipe.transformer, noise, torch.tensor([0, 2]), grid, 2.0, (0.35, 1.0), range(N_STEPS))
        ref3 = reference_sample(pipe.transformer, noise, torch.tensor([0, 2]), grid, 2.0, (0.35, 1.0), {0, 3, 6, 9})
    counter = CallCounter(pipe.transformer)
    plain = final_latent(pipe, monkeypatch, **kw)
    assert torch.equal(plain, ref)
    assert counter.counts["s_embedder"] == N_STEPS and counter.counts["final_layer"] == N_STEPS
    counter.reset()
    assert torch.equal(final_latent(pipe, monkeypatch, sharing="uniform", refresh_rate=1, **kw), plain)
    assert torch.equal(final_latent(pipe, monkeypatch, sharing="statdp", num_encoder_steps=N_STEPS, **kw), plain)
    assert pipe.sharing_stats["key_steps"] == list(range(N_STEPS))  # DP with K = N is every step

    for options, k in [(dict(sharing="uniform", refresh_rate=3), 4), (dict(sharing="statdp", num_encoder_steps=4), 4),
                       (dict(sharing="statdp", refresh_rate=3), 4), (dict(sharing=ReusePolicy.explicit([0, 5])), 2)]:
        final_latent(pipe, monkeypatch, **kw)  # warm: any template run happens before counting
        counter.reset()
        shared = final_latent(pipe, monkeypatch, **options, **kw)
        stats = pipe.sharing_stats
        assert counter.counts["s_embedder"] == k and counter.counts["encoder_blocks"] == 3 * k, options
        assert counter.counts["x_embedder"] == N_STEPS and counter.counts["final_layer"] == N_STEPS, options
        assert stats["encoder_calls"] == k and stats["decoder_calls"] == N_STEPS and len(stats["key_steps"]) == k
        assert stats["key_steps"][0] == 0 and not torch.equal(shared, plain)
        if options.get("sharing") == "uniform":
            assert stats["key_steps"] == [0, 3, 6, 9] and torch.equal(shared, ref3)
    counter.remove()


def test_retimed_sharing_is_the_written_out_loop_with_the_same_counts(monkeypatch):
    pipe = make_pipe()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = dict(class_labels=[0, 2], num_inference_steps=N_STEPS, guidance_scale=2.0, latents=noise)
    grid = pipe.scheduler.time_grid(N_STEPS)
    keys = {0, 3, 6, 9}
    with torch.no_grad():
        ref_official = reference_sample(pipe.transformer, noise, torch.tensor([0, 2]), grid, 2.0, (-1, 2), keys)
        ref_retimed = reference_sample(pipe.transformer, noise, torch.tensor([0, 2]), grid, 2.0, (-1, 2), keys,
                                       retime=True)
    plain = final_latent(pipe, monkeypatch, **kw)
    assert torch.equal(final_latent(pipe, monkeypatch, retime_shared=True, **kw), plain)  # no sharing: no effect
    counter = CallCounter(pipe.transformer)
    retimed = final_latent(pipe, monkeypatch, sharing="uniform", refresh_rate=3, retime_shared=True, **kw)
    assert counter.counts["s_embedder"] == 4 and counter.counts["encoder_blocks"] == 3 * 4
    assert counter.counts["final_layer"] == N_STEPS
    assert pipe.sharing_stats["retime"] and pipe.sharing_stats["encoder_calls"] == 4
    counter.remove()
    assert torch.equal(retimed, ref_retimed)
    official = final_latent(pipe, monkeypatch, sharing="uniform", refresh_rate=3, **kw)
    assert torch.equal(official, ref_official) and not pipe.sharing_stats["retime"]
    assert not torch.equal(retimed, official)  # the reused steps see their own t


def test_encoder_state_skips_the_encoder_and_rebuilds_z_at_the_given_t():
    model = trained_like()
    x, t, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([0, 2, 3])
    fresh = model(x, t, y)
    assert fresh.encoder_state.shape == fresh.z.shape and len(fresh.to_tuple()) == 2
    counter = CallCounter(model)
    same_t = model(x, t, torch.tensor([1, 1, 1]), encoder_state=fresh.encoder_state)  # the label is not used
    assert counter.counts["s_embedder"] == 0 and counter.counts["encoder_blocks"] == 0
    counter.remove()
    assert torch.equal(same_t.sample, fresh.sample) and torch.equal(same_t.z, fresh.z)
    t2 = torch.rand(3)
    other_t = model(x, t2, y, encoder_state=fresh.encoder_state)
    z2 = torch.nn.functional.silu(model.t_embedder(t2)[:, None] + fresh.encoder_state)
    assert torch.equal(other_t.z, z2) and not torch.equal(other_t.sample, fresh.sample)
    assert model(x, t, y, z=fresh.z).encoder_state is None  # given z, there is no state to return
    with pytest.raises(GenlabError, match="not both"):
        model(x, t, y, z=fresh.z, encoder_state=fresh.encoder_state)
    with pytest.raises(GenlabError, match="encoder_state must have shape"):
        model(x, t, y, encoder_state=fresh.encoder_state[:, :4])


# ---------------------------------------------------------------- 8: the statistic DP
def test_dp_matches_brute_force_and_beats_uniform():
    rng = random.Random(0)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        n = rng.randint(1, 10)
        k = rng.randint(1, min(4, n))
        err = torch.rand(n, n, generator=g, dtype=torch.float64)
        steps = solve_statdp(err, k)
        _, best = brute_force_statdp(err, k)
        assert len(steps) == k and steps[0] == 0 and all(b > a for a, b in zip(steps, steps[1:]))
        assert math.isclose(schedule_cost(err, steps), best, rel_tol=1e-12, abs_tol=1e-12)
        for r in range(1, n + 1):  # DP with uniform's budget ceil(N / r) is never worse than uniform
            uniform = ReusePolicy.uniform(r).key_steps(n)
            dp = solve_statdp(err, statdp_steps_for_rate(n, r))
            assert len(dp) == len(uniform) and schedule_cost(err, dp) <= schedule_cost(err, uniform) + 1e-12
    assert solve_statdp(torch.rand(7, 7, dtype=torch.float64), 7) == list(range(7))


def test_dp_finds_the_segments_of_piecewise_constant_features():
    g = torch.Generator().manual_seed(0)
    n, starts = 12, [0, 2, 3, 7, 11]
    values = [torch.randn(2, 5, 8, generator=g) for _ in starts]
    zs = [values[sum(s <= i for s in starts) - 1] * (1 + i) for i in range(n)]  # scale does not change cosines
    sim = similarity_matrix(zs)
    assert sim.dtype == torch.float64 and sim.shape == (n, n)
    torch.testing.assert_close(sim, sim.T)
    torch.testing.assert_close(torch.diagonal(sim), torch.ones(n, dtype=torch.float64))
    steps = solve_statdp(1 - sim, len(starts))
    assert steps == starts and abs(schedule_cost(1 - sim, steps)) < 1e-12


def test_similarity_is_the_mean_token_cosine():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g)
    expected = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).mean()
    torch.testing.assert_close(similarity_matrix([a, b])[0, 1], expected)


def test_policy_bad_input():
    err = torch.rand(5, 5, dtype=torch.float64)
    with pytest.raises(GenlabError, match="exceeds"):
        solve_statdp(err, 6)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(GenlabError, match="positive integer"):
            solve_statdp(err, bad)
        with pytest.raises(GenlabError, match="positive integer"):
            ReusePolicy.uniform(bad)
    with pytest.raises(GenlabError, match="unknown sharing policy"):
        ReusePolicy.from_name("fast")
    with pytest.raises(GenlabError, match="start at 0"):
        ReusePolicy.explicit([1, 3])
    with pytest.raises(GenlabError, match="out of range"):
        ReusePolicy.explicit([0, 7]).key_steps(5)
    with pytest.raises(GenlabError, match="square"):
        solve_statdp(torch.rand(3, 4), 2)
    assert ReusePolicy.uniform(3).num_recomputes(10) == 4 == len(ReusePolicy.uniform(3).key_steps(10))  # ceil(N / r)


# ---------------------------------------------------------------- pipeline: saved schedules, loading, errors
def test_dp_schedule_is_solved_once_from_a_full_run_saved_and_loaded(tmp_path, monkeypatch):
    pipe = make_pipe()
    counter = CallCounter(pipe.transformer)
    settings = dict(num_inference_steps=N_STEPS, guidance_scale=2.0, guidance_interval=(0.35, 1.0))
    steps = pipe.solve_sharing_schedule(num_encoder_steps=4, **settings)
    assert counter.counts["s_embedder"] == N_STEPS  # the template recomputes z at every step
    kw = dict(class_labels=[1, 2], generator=torch.Generator().manual_seed(5), sharing="statdp", num_encoder_steps=4,
              **settings)
    counter.reset()
    before = final_latent(pipe, monkeypatch, **kw)
    assert counter.counts["s_embedder"] == 4 and pipe.sharing_stats["key_steps"] == steps  # no second template run
    counter.reset()
    assert pipe.solve_sharing_schedule(num_encoder_steps=4, **settings) == steps  # re-solving after a DP run:
    assert counter.counts["s_embedder"] == N_STEPS  # again from a full recompute, never from the shared run
    counter.remove()

    pipe.save_pretrained(tmp_path / "ddt")
    index = json.loads((tmp_path / "ddt" / "model_index.json").read_text())
    assert index["_class_name"] == "DDTPipeline" and index["transformer"] == ["genlab", "DDTModel"]
    [entry] = index["sharing_schedules"]
    assert entry["key_steps"] == steps and entry["num_encoder_steps"] == 4 and entry["guidance_interval"] == [0.35, 1.0]

    loaded = DiffusionPipeline.from_pretrained(tmp_path / "ddt")
    assert type(loaded) is genlab.DDTPipeline
    loaded.set_progress_bar_config(disable=True)
    counter = CallCounter(loaded.transformer)
    kw["generator"] = torch.Generator().manual_seed(5)
    assert torch.equal(final_latent(loaded, monkeypatch, **kw), before)
    assert counter.counts["s_embedder"] == 4  # the saved schedule is used, no template run after loading
    counter.reset()
    loaded(class_labels=[0], output_type="pt", sharing="statdp", num_encoder_steps=5, **settings)
    assert counter.counts["s_embedder"] == N_STEPS + 5  # a new K: one template run, then the shared run
    assert len(loaded.config.sharing_schedules) == 2
    counter.reset()  # different guidance settings are a different schedule
    loaded(class_labels=[0], output_type="pt", sharing="statdp", num_encoder_steps=4, num_inference_steps=N_STEPS)
    assert counter.counts["s_embedder"] == N_STEPS + 4 and len(loaded.config.sharing_schedules) == 3
    counter.remove()


@pytest.mark.parametrize("kwargs,match", [
    (dict(sharing="fast"), "unknown sharing"),
    (dict(sharing="uniform", refresh_rate=0), "positive integer"),
    (dict(sharing="uniform", refresh_rate=-2), "positive integer"),
    (dict(sharing="uniform", refresh_rate=0.5), "refresh rate r"),
    (dict(sharing="uniform"), "needs a refresh rate"),
    (dict(sharing="uniform", num_encoder_steps=3), "num_encoder_steps is for"),
    (dict(sharing="statdp", num_encoder_steps=N_STEPS + 1), "exceeds"),
    (dict(sharing="statdp", num_encoder_steps=0), "positive integer"),
    (dict(sharing="statdp"), "number of key steps K"),
    (dict(sharing="statdp", num_encoder_steps=3, refresh_rate=2), "not both"),
    (dict(sharing="none", refresh_rate=2), "every step"),
    (dict(sharing=ReusePolicy.explicit([0, 20])), "out of range"),
    (dict(class_labels=[3]), "out of range"),
    (dict(guidance_interval=(0.8, 0.2)), "guidance interval"),
])
def test_pipeline_bad_input_gives_one_line_errors(kwargs, match):
    pipe = make_pipe()
    kwargs = {"class_labels": [0], "num_inference_steps": N_STEPS, **kwargs}
    with pytest.raises(GenlabError, match=match) as info:
        pipe(**kwargs)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- recipe
def test_flow_ddt_recipe_builds_a_ddt_like_dit_digits():
    from genlab import registry
    from genlab.training.recipe import load_recipe

    ddt, dit = load_recipe("ddt-digits"), load_recipe("dit-digits")
    assert ddt["kind"] == "flow_ddt"
    for section in ("data", "tokenizer", "scheduler", "objective", "train", "sample"):
        assert ddt[section] == dit[section], section  # the DiT / DDT comparison differs in the split only
    m, d = ddt["model"], dit["model"]
    assert m["num_encoder_layers"] + m["num_decoder_layers"] == d["depth"]
    assert (m["hidden_size"], m["num_heads"], m["patch_size"]) == (d["hidden_size"], d["num_heads"], d["patch_size"])
    builder = registry.recipe_kind("flow_ddt")(ddt)
    assert type(builder.model) is DDTModel and type(builder.pipeline(builder.model)) is DDTPipeline
    batch = {"pixel_values": builder.dataset.images[:8], "class_labels": builder.dataset.labels[:8]}
    loss = builder.objective(builder.model, batch, torch.Generator().manual_seed(0))["loss"]
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- check 9: REPA alignment
def test_repa_layer_must_lie_in_the_encoder():
    for bad in [0, 4, -1, 2.0]:
        with pytest.raises(GenlabError, match="repa_layer"):
            tiny(repa_layer=bad, repa_dim=8)
    with pytest.raises(GenlabError, match="both"):
        tiny(repa_layer=1)
    with pytest.raises(GenlabError, match="no REPA projector"):
        tiny()(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1]), return_alignment=True)


def test_repa_loss_range_gradients_and_frozen_teacher():
    from genlab.eval import load_classifier
    from genlab.training.repa import AlignedFlowMatchingObjective, ClassifierTeacher, alignment_loss

    torch.manual_seed(0)
    teacher = ClassifierTeacher(load_classifier("digits"), grid=(4, 4))
    model = DDTModel.from_preset("test", sample_size=8, patch_size=2, num_classes=10, repa_layer=2,
                                 repa_dim=teacher.dim)
    objective = AlignedFlowMatchingObjective(FlowMatchScheduler(), PixelTokenizer(1), teacher=teacher,
                                             alignment_weight=0.5)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batch = {"pixel_values": torch.rand(4, 1, 8, 8) * 2 - 1, "class_labels": torch.tensor([0, 1, 2, 3])}
    out = objective(model, batch, torch.Generator().manual_seed(0))
    assert 0.0 <= float(out["loss_enc"]) <= 2.0
    torch.testing.assert_close(out["loss"].detach(), out["loss_fm"] + 0.5 * out["loss_enc"])
    out["loss"].backward()
    projector_grads = [p.grad for p in model.repa_projector.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in projector_grads)
    # The encoder blocks (up to repa_layer) get gradients from the summed loss.
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k])
    # 1 - cos lies in [0, 2] at its extremes: aligned and opposite features.
    f = torch.randn(2, 5, 7)
    assert float(alignment_loss(f, 3 * f)) == pytest.approx(0.0, abs=1e-6)
    assert float(alignment_loss(f, -f)) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(GenlabError, match="differ"):
        alignment_loss(f, torch.randn(2, 5, 6))


def test_repa_teacher_sees_the_clean_image_on_the_token_grid():
    from genlab.eval import load_classifier
    from genlab.training.repa import ClassifierTeacher

    teacher = ClassifierTeacher(load_classifier("fashion"), grid=(8, 8))
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    feats = teacher.patch_features(images, (8, 8))
    assert feats.shape == (3, 64, teacher.dim)
    assert not torch.equal(feats, teacher.patch_features(images.flip(-1), (8, 8)))


def test_repa_dinov2_teacher_from_a_local_folder(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    from genlab.training.repa import load_teacher

    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             patch_size=2, image_size=8)).save_pretrained(tmp_path / "dino")
    teacher = load_teacher({"type": "dinov2", "path": str(tmp_path / "dino")}, (4, 4))
    feats = teacher.patch_features(torch.rand(2, 1, 8, 8) * 2 - 1, (4, 4))
    assert teacher.dim == 32 and feats.shape == (2, 16, 32)
    with pytest.raises(GenlabError, match="no local model folder"):
        load_teacher({"type": "dinov2", "path": str(tmp_path / "missing")}, (4, 4))
    with pytest.raises(GenlabError, match="unknown REPA teacher"):
        load_teacher({"type": "clip"}, (4, 4))


def test_repa_recipe_trains_and_logs_the_alignment_loss(tmp_path):
    from genlab.training.recipe import load_recipe, run_recipe

    recipe = load_recipe("ddt-digits", ["objective.alignment={teacher: {type: classifier, name: digits}, layer: 2}",
                                        "model.hidden_size=32", "model.num_heads=2", "train.steps=2",
                                        "train.batch_size=8", "train.checkpoint_every=2", "train.log_every=1"])
    run_recipe(recipe, str(tmp_path / "out"), str(tmp_path / "run"))
    log = [json.loads(line) for line in open(tmp_path / "run" / "train_log.jsonl")]
    assert all(0 <= entry["loss_enc"] <= 2 for entry in log)
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "out")
    assert pipe.transformer.config.repa_layer == 2 and pipe.transformer.repa_projector is not None
    images = pipe(class_labels=[0, 1], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2
    with pytest.raises(GenlabError, match="unknown entries"):
        run_recipe(load_recipe("ddt-digits", ["objective.alignment={teach: x}", "train.steps=1"]),
                   str(tmp_path / "o2"), str(tmp_path / "r2"))
