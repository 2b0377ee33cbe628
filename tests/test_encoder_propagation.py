"""Faster Diffusion's encoder propagation on diffusers' own UNets and stock pipelines (spec §10 checks 2-7, 9, 11):
exactness with every step a key, sequential == parallel, call counts and batch sizes, the decoder not reading z,
the cache, noise injection, key-step schedules and their errors. Tiny random UNets: exactness needs no training."""

import pytest
import torch
from diffusers import (DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler,
                       HeunDiscreteScheduler, UNet2DConditionModel, UNet2DModel, UNet3DConditionModel)

from genlab.acceleration.encoder_propagation import (NoiseInjection, apply_encoder_propagation,
                                                     encoder_propagation, get_encoder_propagation,
                                                     remove_encoder_propagation, statdp_key_steps)
from genlab.acceleration.key_steps import key_groups, pro_key_steps, resolve_key_steps
from genlab.errors import GenlabError

LS50 = [0, 1, 2, 3, 5, 10, 15, 25, 35]


def unet2d(seed=0, layers=1):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                       layers_per_block=layers, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=4).eval()


def text_unet(cls, channels: int, dims: str, seed=0):
    """A tiny cross-attention UNet of diffusers' class `cls` (dims "2D" or "3D"), on 24-d text states."""
    torch.manual_seed(seed)
    return cls(sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(16, 32),
               layers_per_block=1, down_block_types=(f"CrossAttnDownBlock{dims}", f"DownBlock{dims}"),
               up_block_types=(f"UpBlock{dims}", f"CrossAttnUpBlock{dims}"), cross_attention_dim=24,
               attention_head_dim=4, norm_num_groups=8).eval()


def unet_cond(seed=0):
    return text_unet(UNet2DConditionModel, 4, "2D", seed)


def unet3d(seed=0):
    return text_unet(UNet3DConditionModel, 3, "3D", seed)


class Loop:
    """A plain CFG sampling loop as diffusers' pipelines write it: set_timesteps, one batched UNet call per step."""

    def __init__(self, unet, scheduler):
        self.unet, self.scheduler = unet, scheduler

    @torch.no_grad()
    def __call__(self, steps, shape, cond=None, guidance=2.0, seed=0, trace=None, **kwargs):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(shape, generator=g) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(steps)
        for i, t in enumerate(self.scheduler.timesteps):
            x = self.scheduler.scale_model_input(torch.cat([z, z]) if cond is not None else z, t)
            extra = dict(kwargs)
            if cond is not None:
                extra.update(cond)
            eps = self.unet(x, t, **extra).sample
            if cond is not None:
                u, c = eps.chunk(2)
                eps = u + guidance * (c - u)
            if trace is not None:
                trace.append(eps)
            z = self.scheduler.step(eps, t, z).prev_sample
        return z


def class_cond(batch):
    labels = torch.arange(batch) % 4
    return {"class_labels": torch.cat([torch.zeros_like(labels) + 3, labels])}


def text_cond(batch, frames=False):
    g = torch.Generator().manual_seed(7)
    return {"encoder_hidden_states": torch.randn(2 * batch, 5, 24, generator=g)}


SETUPS = {
    "unet2d": (unet2d, (2, 1, 8, 8), class_cond),
    "unet2d-condition": (unet_cond, (2, 4, 8, 8), text_cond),
    "unet3d-condition": (unet3d, (1, 3, 3, 8, 8), text_cond),
}


def schedulers():
    kw = dict(num_train_timesteps=1000, beta_schedule="linear")
    return {"ddim-50": (lambda: DDIMScheduler(**kw), 50), "dpmpp-20": (lambda: DPMSolverMultistepScheduler(**kw), 20)}


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("sched", list(schedulers()))
@pytest.mark.parametrize("parallel", [False, True])
def test_every_step_a_key_is_the_plain_sampler_bit_for_bit(setup, sched, parallel):
    make, shape, cond = SETUPS[setup]
    make_sched, steps = schedulers()[sched]
    if setup == "unet3d-condition":
        steps = 10  # the 3-D UNet is the slowest; the code path (every stage hooked, batched calls) is what matters
    loop = Loop(make(), make_sched())
    plain = loop(steps, shape, cond(shape[0]))
    with encoder_propagation(loop, key_steps="all", parallel=parallel) as hook:
        fast = loop(steps, shape, cond(shape[0]))
        assert hook.stats["encoder_calls"] == steps
    assert torch.equal(plain, fast)


def cast(cond, dtype):
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in cond.items()}


@pytest.mark.parametrize("setup", ["unet2d", "unet2d-condition"])
def test_sequential_equals_parallel_and_call_counts_for_50ls(setup):
    """Counts for 50ls, and sequential == parallel. Batching the decoders changes only the rounding: in float64 the
    two agree to 1e-10. In float32 one batched step agrees to 1e-5, but the key steps read the latent, so those
    roundings (1e-6) compound over 50 steps of a random-weight UNet: the final latents agree to 1e-3, not 1e-5."""
    make, shape, cond = SETUPS[setup]
    rows = 2 * shape[0]
    results = {}
    for dtype in (torch.float64, torch.float32):
        loop = Loop(make().to(dtype), DDIMScheduler(num_train_timesteps=1000))
        torch.set_default_dtype(dtype)
        try:
            for parallel in (False, True):
                with encoder_propagation(loop, key_steps="50ls", parallel=parallel) as hook:
                    trace = []
                    results[dtype, parallel] = loop(50, shape, cast(cond(shape[0]), dtype), trace=trace), trace
                    s = hook.stats
                assert s["encoder_calls"] == 9
                if parallel:
                    assert s["decoder_calls"] == 9
                    assert s["decoder_batch_sizes"] == [n * rows for n in (1, 1, 1, 2, 5, 5, 10, 10, 15)]
                else:
                    assert s["decoder_calls"] == 50 and s["decoder_batch_sizes"] == [rows] * 50
            plain = loop(50, shape, cast(cond(shape[0]), dtype))
        finally:
            torch.set_default_dtype(torch.float32)
        assert not torch.equal(plain, results[dtype, False][0])  # propagation changes the samples: the trick is on
    (seq64, seq64_eps), (par64, par64_eps) = results[torch.float64, False], results[torch.float64, True]
    assert (seq64 - par64).abs().max() < 1e-10
    assert max((a - b).abs().max() for a, b in zip(seq64_eps, par64_eps)) < 1e-10
    (seq, seq_eps), (par, par_eps) = results[torch.float32, False], results[torch.float32, True]
    assert max((a - b).abs().max() for a, b in zip(seq_eps[3:5], par_eps[3:5])) < 1e-5  # the first batched group
    assert (seq - par).abs().max() < 1e-3


def test_encoder_and_decoder_counts_by_the_modules_themselves():
    """Counted by forward hooks on modules inside the encoder (first resnet) and the decoder (conv_out)."""
    loop = Loop(unet2d(), DDIMScheduler(num_train_timesteps=1000))
    calls = {"enc": 0, "dec": []}
    loop.unet.down_blocks[0].resnets[0].register_forward_hook(lambda m, i, o: calls.__setitem__("enc",
                                                                                                 calls["enc"] + 1))
    loop.unet.conv_out.register_forward_hook(lambda m, i, o: calls["dec"].append(i[0].shape[0]))
    with encoder_propagation(loop, key_steps="50ls", parallel=True, max_parallel=4):
        loop(50, (2, 1, 8, 8), class_cond(2))
    assert calls["enc"] == 9
    # groups of 1,1,1,2,5,5,10,10,15 steps cut into chunks of at most 4
    chunks = [min(4, n - k) for n in (1, 1, 1, 2, 5, 5, 10, 10, 15) for k in range(0, n, 4)]
    assert calls["dec"] == [4 * c for c in chunks]


def test_max_parallel_chunks_give_the_same_samples():
    """Chunks change only the batching (float32 rounding, compounded as in the sequential == parallel test)."""
    loop = Loop(unet2d(), DDIMScheduler(num_train_timesteps=1000))
    with encoder_propagation(loop, key_steps="50ls", parallel=True):
        full = loop(50, (2, 1, 8, 8), class_cond(2))
    with encoder_propagation(loop, key_steps="50ls", parallel=True, max_parallel=3):
        chunked = loop(50, (2, 1, 8, 8), class_cond(2))
    assert (full - chunked).abs().max() < 1e-3


def test_non_key_steps_do_not_read_the_latent():
    unet = unet2d()
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(10)
    apply_encoder_propagation(unet, key_steps=[0, 5], parallel=False, scheduler=scheduler)
    scheduler.set_timesteps(10)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1])
    outs = []
    for i, t in enumerate(scheduler.timesteps[:3]):
        a = unet(x if i != 1 else x + 5.0, t, class_labels=labels).sample
        outs.append(a)
    # step 1 is not a key: the +5 perturbation of its input must not change its output vs the unperturbed input
    remove_encoder_propagation(unet)
    apply_encoder_propagation(unet, key_steps=[0, 5], parallel=False, scheduler=scheduler)
    scheduler.set_timesteps(10)
    ref = [unet(x, t, class_labels=labels).sample for t in scheduler.timesteps[:3]]
    assert torch.equal(outs[1], ref[1]) and torch.equal(outs[2], ref[2])
    # at a key step the input is read
    scheduler.set_timesteps(10)
    key = unet(x + 5.0, scheduler.timesteps[0], class_labels=labels).sample
    assert not torch.allclose(key, ref[0])
    remove_encoder_propagation(unet)


def test_cache_holds_every_skip_and_the_mid_output_of_the_plain_forward():
    layers = 2
    unet = unet2d(layers=layers)
    x, t, labels = torch.randn(2, 1, 8, 8), torch.tensor(500), torch.tensor([0, 1])
    captured = {}

    def keep(name):
        return lambda m, i, o: captured.__setitem__(name, o)

    handles = [unet.conv_in.register_forward_hook(keep("conv_in")), unet.mid_block.register_forward_hook(keep("mid"))]
    handles += [b.register_forward_hook(keep(f"down{k}")) for k, b in enumerate(unet.down_blocks)]
    with torch.no_grad():
        unet(x, t, class_labels=labels)
    for h in handles:
        h.remove()
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(4)
    hook = apply_encoder_propagation(unet, key_steps="all", parallel=False, scheduler=scheduler)
    with torch.no_grad():
        unet(x, scheduler.timesteps[0], class_labels=labels)
    stages = {h.name: h for h in _stage_hooks(unet)}
    skips = (stages["conv_in"].cached,) + sum((stages[f"down_blocks.{k}"].cached[1] for k in range(2)), ())
    n_down = len(unet.down_blocks)
    assert len(skips) == 1 + n_down * layers + (n_down - 1)
    remove_encoder_propagation(unet)
    del hook
    # the same skips as the plain forward at the same timestep
    with torch.no_grad():
        handles = [unet.conv_in.register_forward_hook(keep("conv_in"))]
        handles += [b.register_forward_hook(keep(f"down{k}")) for k, b in enumerate(unet.down_blocks)]
        handles.append(unet.mid_block.register_forward_hook(keep("mid")))
        unet(x, scheduler.timesteps[0], class_labels=labels)
    plain_skips = (captured["conv_in"],) + captured["down0"][1] + captured["down1"][1]
    assert all(torch.equal(a, b) for a, b in zip(skips, plain_skips))
    assert torch.equal(stages["mid_block"].cached, captured["mid"])
    for h in handles:
        h.remove()


def _stage_hooks(unet):
    from genlab.acceleration.encoder_propagation import STAGE_HOOK_NAME, _encoder_stages

    return [m._diffusers_hook.get_hook(STAGE_HOOK_NAME) for _, m in _encoder_stages(unet)]


def test_noise_injection_off_at_alpha_zero_and_from_the_first_step_below_tau():
    loop = Loop(unet2d(), DDIMScheduler(num_train_timesteps=1000))
    plain_traj, inj_traj, zero_traj = [], [], []
    loop(50, (2, 1, 8, 8), class_cond(2), trace=plain_traj)
    with encoder_propagation(loop, key_steps="all", parallel=False, noise_injection=NoiseInjection(0.0, 500)):
        loop(50, (2, 1, 8, 8), class_cond(2), trace=zero_traj)
    with encoder_propagation(loop, key_steps="all", parallel=False,
                             noise_injection=NoiseInjection(0.003, 500)) as hook:
        loop(50, (2, 1, 8, 8), class_cond(2), trace=inj_traj)
        injected = hook.stats["injected_steps"]
    assert all(torch.equal(a, b) for a, b in zip(plain_traj, zero_traj))
    timesteps = loop.scheduler.timesteps
    below = [i for i, t in enumerate(timesteps) if t < 500]
    assert injected == below and len(below) == 25  # 25 of DDIM-50's steps have t < 500, as the spec says for SD
    first = below[0]
    assert all(torch.equal(a, b) for a, b in zip(plain_traj[:first], inj_traj[:first]))
    assert not torch.equal(plain_traj[first], inj_traj[first])


def test_stock_diffusers_pipelines_ddpm_and_ddim():
    for pipe_cls, sched in ((DDPMPipeline, DDPMScheduler(num_train_timesteps=1000)),
                            (DDIMPipeline, DDIMScheduler(num_train_timesteps=1000))):
        unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                           layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)
        pipe = pipe_cls(unet=unet, scheduler=sched)
        pipe.set_progress_bar_config(disable=True)

        def run():
            return pipe(batch_size=2, num_inference_steps=20, generator=torch.Generator().manual_seed(0),
                        output_type="np").images

        plain = run()
        apply_encoder_propagation(pipe, key_steps="all")
        assert (run() == plain).all()
        remove_encoder_propagation(pipe)
        apply_encoder_propagation(pipe, key_steps=4)
        fast = run()
        assert get_encoder_propagation(pipe).stats["encoder_calls"] == 5
        remove_encoder_propagation(pipe)
        assert get_encoder_propagation(pipe) is None
        assert (run() == plain).all()  # removed: the plain sampler again
        assert not (fast == plain).all()


def test_stable_diffusion_pipeline_from_tiny_random_components():
    from diffusers import AutoencoderKL, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {f"{c}</w>": i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    import json
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=24, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                                bos_token_id=vocab["<|startoftext|>"],
                                                eos_token_id=vocab["<|endoftext|>"], pad_token_id=0))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                        down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        norm_num_groups=8, sample_size=8)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet_cond(),
                                   scheduler=DDIMScheduler(num_train_timesteps=1000), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def run():
        return pipe("a cat", height=8, width=8, num_inference_steps=50, guidance_scale=5.0, output_type="latent",
                    generator=torch.Generator().manual_seed(0)).images

    plain = run()
    with encoder_propagation(pipe, key_steps="all"):
        assert torch.equal(run(), plain)
    with encoder_propagation(pipe, key_steps="50ls") as hook:
        fast = run()
        assert hook.stats["encoder_calls"] == 9 and hook.stats["decoder_batch_sizes"][-1] == 15 * 2
    assert not torch.equal(fast, plain)


def test_key_step_schedules():
    assert resolve_key_steps("50ls", 50) == LS50
    assert pro_key_steps(50) == [0, 2, 5, 9, 14, 20, 27, 35, 44]
    assert resolve_key_steps("pro", 50) == [0, 2, 5, 9, 14, 20, 27, 35, 44]
    for n in (7, 20, 50):
        for m in (1, 3, 4):
            keys = resolve_key_steps(m, n)
            assert len(keys) == -(-n // m) and keys == resolve_key_steps(f"uniform:{m}", n)
    groups = key_groups(LS50, 50)
    assert [len(g) for g in groups] == [1, 1, 1, 2, 5, 5, 10, 10, 15]
    assert sum(groups, []) == list(range(50))
    assert resolve_key_steps("all", 5) == [0, 1, 2, 3, 4]
    assert len(resolve_key_steps("100ls", 100)) == len([i for i in range(100) if i < 10 or i > 85 or i % 5 == 0])


@pytest.mark.parametrize("spec, steps, message", [
    ([0, 3, 60], 50, "out of range"),
    ([1, 3, 5], 50, "start at 0"),
    ([0, 5, 3], 50, "sorted"),
    ([0, 3, 3], 50, "repeat"),
    ([0, -1], 50, ">= 0"),
    ([], 50, "empty"),
    ("50ls", 20, "defined for 50"),
    ("fast", 50, "unknown key-step preset"),
    (0, 50, "refresh rate"),
    ("uniform:x", 50, "integer"),
])
def test_bad_key_steps_are_one_line_errors(spec, steps, message):
    with pytest.raises(GenlabError, match=message) as e:
        resolve_key_steps(spec, steps)
    assert "\n" not in str(e.value)


def test_unsupported_models_schedulers_and_residuals_are_refused():
    with pytest.raises(GenlabError, match="UNet2DModel"):
        apply_encoder_propagation(torch.nn.Linear(2, 2), scheduler=DDIMScheduler())
    with pytest.raises(GenlabError, match="HeunDiscreteScheduler calls the model 2 times"):
        apply_encoder_propagation(unet2d(), scheduler=HeunDiscreteScheduler())
    with pytest.raises(GenlabError, match="needs the scheduler"):
        apply_encoder_propagation(unet2d())
    with pytest.raises(GenlabError, match="start at 0"):
        apply_encoder_propagation(unet2d(), key_steps=[2, 4], scheduler=DDIMScheduler())
    loop = Loop(unet_cond(), DDIMScheduler(num_train_timesteps=1000))
    with encoder_propagation(loop, key_steps=4):
        with pytest.raises(GenlabError, match="does not support .*residual"):
            loop(8, (1, 4, 8, 8), text_cond(1), mid_block_additional_residual=torch.zeros(2, 32, 4, 4),
                 down_block_additional_residuals=tuple())


def test_two_unet_calls_per_step_are_refused():
    unet, scheduler = unet2d(), DDIMScheduler(num_train_timesteps=1000)
    with encoder_propagation(unet, key_steps=2, scheduler=scheduler):
        scheduler.set_timesteps(10)
        t = scheduler.timesteps[0]
        x = torch.randn(1, 1, 8, 8)
        unet(x, t, class_labels=torch.tensor([0]))
        with pytest.raises(GenlabError, match="one UNet call per scheduler step"):
            unet(x, t, class_labels=torch.tensor([1]))  # CFG as two calls


def test_another_feature_cache_on_the_same_unet_is_refused():
    from diffusers.hooks import PyramidAttentionBroadcastConfig, apply_pyramid_attention_broadcast

    unet = unet_cond()
    apply_pyramid_attention_broadcast(unet, PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, current_timestep_callback=lambda: 500,
        spatial_attention_block_identifiers=("attentions",)))
    with pytest.raises(GenlabError, match="two caches on one model"):
        apply_encoder_propagation(unet, scheduler=DDIMScheduler())
    unet = unet2d()
    apply_encoder_propagation(unet, scheduler=DDIMScheduler())
    with pytest.raises(GenlabError, match="already has"):
        apply_encoder_propagation(unet, scheduler=DDIMScheduler())


def test_statdp_key_steps_come_from_a_template_run():
    pipe = Loop(unet2d(), DDIMScheduler(num_train_timesteps=1000))
    keys = statdp_key_steps(pipe, 9, steps=50, shape=(2, 1, 8, 8), cond=class_cond(2))
    assert len(keys) == 9 and keys[0] == 0 and keys == sorted(set(keys)) and keys[-1] < 50
    assert get_encoder_propagation(pipe) is None
    with encoder_propagation(pipe, key_steps=keys) as hook:
        pipe(50, (2, 1, 8, 8), class_cond(2))
        assert hook.stats["encoder_calls"] == 9


@pytest.mark.parametrize("parallel", [True])
def test_flop_ratio_is_the_encoder_skipping_bound(parallel):
    """FLOPs(propagated) / FLOPs(plain) = (K c_E + N c_D) / (N (c_E + c_D)) within 2%, counted by
    torch.utils.flop_counter; c_E = conv_in + down blocks + mid block of one plain forward, c_D = the rest (up
    blocks, conv_out and the time embedding, which runs at every step)."""
    from torch.utils.flop_counter import FlopCounterMode

    loop = Loop(unet2d(), DDIMScheduler(num_train_timesteps=1000))
    with FlopCounterMode(display=False) as one:
        loop.unet(torch.randn(4, 1, 8, 8), torch.tensor(500), class_labels=torch.arange(4))
    counts = one.get_flop_counts()
    encoder = ["conv_in", "down_blocks.0", "down_blocks.1", "mid_block"]
    c_e = sum(sum(counts[f"UNet2DModel.{name}"].values()) for name in encoder)
    c_all = sum(counts["Global"].values())
    c_d = c_all - c_e
    assert 0 < c_e < c_all
    with FlopCounterMode(display=False) as plain:
        loop(50, (2, 1, 8, 8), class_cond(2))
    with encoder_propagation(loop, key_steps="50ls", parallel=parallel):
        with FlopCounterMode(display=False) as fast:
            loop(50, (2, 1, 8, 8), class_cond(2))
    measured = sum(fast.get_flop_counts()["Global"].values()) / sum(plain.get_flop_counts()["Global"].values())
    bound = (9 * c_e + 50 * c_d) / (50 * (c_e + c_d))
    assert abs(measured / bound - 1) < 0.02, (measured, bound)
    assert measured < 0.9  # the trick saves work at all


def test_video_unet_batched_decoders_match_sequential():
    """The 3-D UNet folds frames into the batch (rows = clip x frame): the batched decoder call must keep every
    step's rows together. float64, so that only rounding could differ."""
    torch.set_default_dtype(torch.float64)
    try:
        loop = Loop(unet3d().to(torch.float64), DDIMScheduler(num_train_timesteps=1000))
        cond = cast(text_cond(1), torch.float64)
        out = {}
        for parallel in (False, True):
            with encoder_propagation(loop, key_steps=[0, 1, 4], parallel=parallel) as hook:
                out[parallel] = loop(10, (1, 3, 3, 8, 8), cond)
                sizes = hook.stats["decoder_batch_sizes"]
        assert sizes == [2, 2 * 3, 2 * 6]
    finally:
        torch.set_default_dtype(torch.float32)
    assert (out[False] - out[True]).abs().max() < 1e-10
