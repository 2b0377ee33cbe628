import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from genlab.errors import GenlabError
from genlab.schedulers import FlowMatchScheduler, GuidanceSchedule, apply_cfg, shift_time, sigma_to_t, t_to_sigma


@pytest.mark.parametrize("n,last_step,shift", [(10, None, 1.0), (40, 0.04, 1.0), (7, None, 3.0), (1, None, 1.0)])
def test_grid_invariants(n, last_step, shift):
    grid = FlowMatchScheduler(last_step=last_step, shift=shift).time_grid(n)
    assert len(grid) == n + 1
    assert grid[0] == 0 and grid[-1] == 1
    assert torch.all(grid[1:] > grid[:-1])
    if shift == 1.0:
        expected = 1 - (last_step if last_step is not None else 1 / n)
        assert abs(grid[-2].item() - expected) < 1e-12


def test_shift_moves_points_toward_noise_and_keeps_ends():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    s = shift_time(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and torch.all(s[1:-1] < t[1:-1])
    assert torch.allclose(sigma_to_t(t_to_sigma(t)), t)


def run(scheduler, velocity, x, n):
    scheduler.set_timesteps(n)
    calls = 0
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(x, float(t)), t, x).prev_sample
        calls += 1
    return x, calls


def test_euler_follows_a_straight_flow_exactly():
    data, noise = torch.randn(4, 3), torch.randn(4, 3)
    out, calls = run(FlowMatchScheduler(), lambda x, t: data - noise, noise.clone(), 13)
    torch.testing.assert_close(out, data)
    assert calls == 13


def test_heun_is_exact_for_velocity_linear_in_t_where_euler_is_not():
    x0 = torch.zeros(2)
    velocity = lambda x, t: torch.full_like(x, t)  # noqa: E731  dx/dt = t  =>  x(1) = x(0) + 1/2
    heun, heun_calls = run(FlowMatchScheduler(solver="heun"), velocity, x0.clone(), 5)
    euler, euler_calls = run(FlowMatchScheduler(solver="euler"), velocity, x0.clone(), 5)
    torch.testing.assert_close(heun, torch.full((2,), 0.5))
    assert abs(euler[0].item() - 0.5) > 0.05
    assert heun_calls == 10 == FlowMatchScheduler(solver="heun").model_evaluations(5)
    assert euler_calls == 5 == FlowMatchScheduler().model_evaluations(5)


def test_euler_matches_diffusers_flow_match_euler_on_the_same_sigmas():
    """diffusers integrates in sigma = 1 - t with model_output = noise - x = -v; both must give the same path."""
    ours = FlowMatchScheduler()
    ours.set_timesteps(8)
    theirs = FlowMatchEulerDiscreteScheduler(shift=1.0)
    theirs.set_timesteps(sigmas=t_to_sigma(ours.grid[:-1]).float().numpy())
    assert torch.allclose(theirs.sigmas.double(), t_to_sigma(ours.grid), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    a = b = torch.randn(2, 3, generator=g)
    w = torch.randn(3, 3, generator=g)
    for t, s in zip(ours.timesteps, theirs.timesteps):
        a = ours.step(torch.tanh(a @ w) * (1 + t), t, a).prev_sample
        b = theirs.step(-torch.tanh(b @ w) * (1 + t), s, b).prev_sample
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_training_helpers():
    s = FlowMatchScheduler()
    t = s.sample_t(20_000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1 and abs(t.mean().item() - 0.5) < 0.01 and t.std() < 0.25  # logit-normal
    u = FlowMatchScheduler(train_t_distribution="uniform").sample_t(20_000, torch.Generator().manual_seed(0))
    assert abs(u.std().item() - (1 / 12) ** 0.5) < 0.01
    x, e = torch.randn(3, 2), torch.randn(3, 2)
    assert torch.equal(s.add_noise(x, e, torch.zeros(3)), e) and torch.equal(s.add_noise(x, e, torch.ones(3)), x)
    torch.testing.assert_close(s.velocity_target(x, e), x - e)


def test_bad_scheduler_arguments():
    with pytest.raises(GenlabError, match="solver"):
        FlowMatchScheduler(solver="rk4")
    with pytest.raises(GenlabError, match="num_inference_steps"):
        FlowMatchScheduler().set_timesteps(0)
    with pytest.raises(GenlabError, match="num_inference_steps"):
        FlowMatchScheduler().set_timesteps(-3)
    with pytest.raises(GenlabError, match="set_timesteps"):
        FlowMatchScheduler().step(torch.zeros(1), 0.0, torch.zeros(1))


def test_guidance_schedules_and_cfg_gate():
    cond, uncond = torch.ones(3), torch.zeros(3)
    interval = GuidanceSchedule(4.0, "interval", (0.3, 1.0))
    assert [interval(t) for t in (0.0, 0.3, 0.31, 0.99, 1.0)] == [1.0, 1.0, 4.0, 4.0, 1.0]  # strict interval
    assert torch.equal(apply_cfg(uncond, cond, interval(0.5)), torch.full((3,), 4.0))
    assert torch.equal(apply_cfg(uncond, cond, interval(0.1)), cond)
    linear = GuidanceSchedule(3.0, "linear")
    assert linear(0.0) == 1.0 and linear(1.0) == 3.0 and linear(0.5) == 2.0
    assert GuidanceSchedule(2.0)(0.7) == 2.0 and not GuidanceSchedule(1.0).active
    with pytest.raises(GenlabError):
        GuidanceSchedule(2.0, "cosine")
    with pytest.raises(GenlabError):
        GuidanceSchedule(-1.0)
    with pytest.raises(GenlabError):
        GuidanceSchedule(2.0, "interval", (0.8, 0.2))


def test_scheduler_save_load(tmp_path):
    s = FlowMatchScheduler(solver="heun", shift=2.0, last_step=0.04)
    s.save_pretrained(tmp_path)
    loaded = FlowMatchScheduler.from_pretrained(tmp_path)
    assert loaded.config.solver == "heun" and loaded.config.shift == 2.0
    assert torch.equal(loaded.time_grid(10), s.time_grid(10))


def test_diffusers_ddim_is_exported_and_recovers_data_with_an_oracle():
    """DDPM/DDIM come from diffusers itself; with the true noise as model output DDIM lands on the data."""
    from genlab.schedulers import DDIMScheduler, DDPMScheduler

    assert DDIMScheduler.__module__.startswith("diffusers") and DDPMScheduler.__module__.startswith("diffusers")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    ddim = DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=True, clip_sample=False)
    ddim.set_timesteps(10)
    sample = ddim.add_noise(x0, noise, ddim.timesteps[:1])
    for t in ddim.timesteps:
        sample = ddim.step(noise, t, sample).prev_sample  # a perfect epsilon predictor
    torch.testing.assert_close(sample, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_evaluation_times_and_steps_match_diffusers_flow_match_euler_with_its_own_shift(shift):
    """With shift != 1 diffusers shifts its own sigmas (use_dynamic_shifting off): sigma' = s sigma / (1 + (s-1)
    sigma). genlab's shift on t = 1 - sigma is the same map, so both evaluate the model at the same times and take
    the same Euler steps (model_output = -v in diffusers' convention)."""
    n = 6
    ours = FlowMatchScheduler(shift=shift)
    ours.set_timesteps(n)
    theirs = FlowMatchEulerDiscreteScheduler(shift=shift)
    unshifted = 1 - torch.linspace(0, 1 - 1 / n, n, dtype=torch.float64)  # the grid before any shift
    theirs.set_timesteps(sigmas=unshifted.float().numpy())
    torch.testing.assert_close(theirs.sigmas[:-1].double(), t_to_sigma(ours.timesteps.double()), atol=1e-6,
                               rtol=0)  # the times the model is evaluated at
    assert float(theirs.sigmas[-1]) == 0.0 and float(ours.grid[-1]) == 1.0
    seen_ours, seen_theirs = [], []
    g = torch.Generator().manual_seed(1)
    a = b = torch.randn(2, 3, generator=g)
    w = torch.randn(3, 3, generator=g)
    for t, s in zip(ours.timesteps, theirs.timesteps):
        seen_ours.append(float(t))
        seen_theirs.append(float(sigma_to_t(s / 1000)))
        a = ours.step(torch.tanh(a @ w) * (1 + t), t, a).prev_sample
        b = theirs.step(-torch.tanh(b @ w) * (1 + sigma_to_t(s / 1000)), s, b).prev_sample
    assert seen_ours == pytest.approx(seen_theirs, abs=1e-5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
