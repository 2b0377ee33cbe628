"""Schedulers hold no weights: flow matching (Euler/Heun, shift), diffusers' DDPM/DDIM, CFG schedules."""

from diffusers import DDIMScheduler, DDPMScheduler  # re-exported: genlab uses diffusers' own for DDPM/DDIM

from .flow_match import FlowMatchScheduler, FlowMatchSchedulerOutput, shift_time, sigma_to_t, t_to_sigma
from .guidance import GuidanceSchedule, apply_cfg, cfg_inputs

__all__ = [
    "DDIMScheduler", "DDPMScheduler", "FlowMatchScheduler", "FlowMatchSchedulerOutput", "shift_time", "sigma_to_t",
    "t_to_sigma", "GuidanceSchedule", "apply_cfg", "cfg_inputs",
]
