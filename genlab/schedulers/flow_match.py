"""Rectified-flow / flow-matching scheduler with Euler and Heun solvers.

Time convention (DDT's, and genlab's everywhere): t in [0, 1], **t = 0 is pure noise, t = 1 is data**:
    x_t = t * x + (1 - t) * noise,      velocity target v = x - noise.
diffusers' flow schedulers use the opposite direction (sigma = 1 is noise); `t_to_sigma` / `sigma_to_t` is the one
place that converts, so a guidance interval is never flipped by accident.

Sampling grid: linspace(0, 1 - last_step, N) followed by 1.0 (N Euler steps), then the time shift
t -> t / (t + (1 - t) * shift) (shift > 1 spends more steps near the noise end). last_step defaults to 1/N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from ..errors import GenlabError, check_positive_int


def t_to_sigma(t):
    """genlab time (0 = noise) -> diffusers flow sigma (1 = noise)."""
    return 1 - t


def sigma_to_t(sigma):
    """diffusers flow sigma (1 = noise) -> genlab time (0 = noise)."""
    return 1 - sigma


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Time shift that keeps 0 and 1 fixed; shift > 1 moves grid points toward the noise end (t = 0)."""
    if shift == 1.0:
        return t
    return t / (t + (1 - t) * shift)


@dataclass
class FlowMatchSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor


class FlowMatchScheduler(SchedulerMixin, ConfigMixin):
    """Euler / Heun ODE solver for a linear flow, plus the training-time helpers (t sampling, noising, target).

    `timesteps` lists the t at which the model is evaluated, in order. Euler: N entries. Heun: 2N entries, a
    predictor at t_i followed by a corrector at t_{i+1} (the velocity field is finite at t = 1, so unlike EDM's
    denoiser the last step needs no Euler fallback). `step` is stateful like diffusers' Heun scheduler: call it
    once per entry of `timesteps`.
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, solver: str = "euler", shift: float = 1.0, last_step: float | None = None,
                 train_t_distribution: str = "logit_normal", logit_mean: float = 0.0, logit_std: float = 1.0):
        if solver not in ("euler", "heun"):
            raise GenlabError(f"unknown solver {solver!r}: use 'euler' or 'heun'")
        if train_t_distribution not in ("logit_normal", "uniform"):
            raise GenlabError(f"unknown train_t_distribution {train_t_distribution!r}: use 'logit_normal' or 'uniform'")
        if shift <= 0:
            raise GenlabError(f"shift must be > 0, got {shift}")
        self.timesteps = None
        self.grid = None
        self.num_inference_steps = None
        self._step_index = 0
        self._prev = None  # Heun: (x_i, v_i, dt) kept between predictor and corrector

    # ----- sampling -----
    def time_grid(self, num_inference_steps: int) -> torch.Tensor:
        """The N + 1 solver times, float64, from 0 (noise) to 1 (data)."""
        n = check_positive_int(num_inference_steps, "num_inference_steps")
        last = self.config.last_step if self.config.last_step is not None else 1.0 / n
        if not 0 < last <= 1:
            raise GenlabError(f"last_step must be in (0, 1], got {last}")
        grid = torch.cat([torch.linspace(0, 1 - last, n, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
        return shift_time(grid, self.config.shift)

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        grid = self.time_grid(num_inference_steps)
        self.num_inference_steps = int(num_inference_steps)
        self.grid = grid
        if self.config.solver == "euler":
            ts = grid[:-1]
        else:
            ts = torch.stack([grid[:-1], grid[1:]], dim=1).reshape(-1)  # (t_i predictor, t_{i+1} corrector) pairs
        self.timesteps = ts.to(device=device, dtype=torch.float32)
        self._step_index = 0
        self._prev = None

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        """Advance the solver by one model evaluation; returns the sample at which to evaluate next."""
        if self.timesteps is None:
            raise GenlabError("call set_timesteps(num_inference_steps) before step()")
        if self._step_index >= len(self.timesteps):
            raise GenlabError("the scheduler has already finished; call set_timesteps again")
        v = model_output.to(torch.float32)
        x = sample.to(torch.float32)
        if self.config.solver == "euler":
            i = self._step_index
            dt = float(self.grid[i + 1] - self.grid[i])
            out = x + dt * v
        else:
            out = self._heun_step(v, x)
        self._step_index += 1
        out = out.to(sample.dtype)
        return FlowMatchSchedulerOutput(prev_sample=out) if return_dict else (out,)

    def _heun_step(self, v, x):
        i = self._step_index // 2
        if self._step_index % 2 == 0:  # predictor at t_i: Euler to t_{i+1}, remember (x_i, v_i)
            dt = float(self.grid[i + 1] - self.grid[i])
            self._prev = (x, v, dt)
            return x + dt * v
        x0, v0, dt = self._prev  # corrector: trapezoid with the velocity at the predicted point
        self._prev = None
        return x0 + 0.5 * dt * (v0 + v)

    def model_evaluations(self, num_inference_steps: int) -> int:
        """How many velocity evaluations a full solve takes (N for Euler, 2N for Heun)."""
        n = check_positive_int(num_inference_steps, "num_inference_steps")
        return n if self.config.solver == "euler" else 2 * n

    # ----- training -----
    def sample_t(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Training times: logit-normal (sigmoid of N(mean, std)) or uniform on [0, 1]."""
        if self.config.train_t_distribution == "uniform":
            t = torch.rand(batch_size, generator=generator)
        else:
            n = torch.randn(batch_size, generator=generator) * self.config.logit_std + self.config.logit_mean
            t = torch.sigmoid(n)
        return t.to(device) if device is not None else t

    @staticmethod
    def add_noise(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return t * x + (1 - t) * noise

    @staticmethod
    def velocity_target(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x - noise

    def __len__(self):
        return self.num_inference_steps or 0
