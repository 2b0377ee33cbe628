"""Schedulers hold no weights: flow matching (Euler/Heun, shift), diffusers' DDPM/DDIM, CFG schedules, and the
decoding orders (raster, NAR's Manhattan rings) of token AR models with their attention masks."""

from diffusers import DDIMScheduler, DDPMScheduler  # re-exported: genlab uses diffusers' own for DDPM/DDIM

from .flow_match import FlowMatchScheduler, FlowMatchSchedulerOutput, shift_time, sigma_to_t, t_to_sigma
from .guidance import GuidanceSchedule, apply_cfg, cfg_combine, cfg_inputs, cfg_labels
from .orders import causal_mask, level_mask, proximity_mask, raster_levels, raster_mask, ring_levels

__all__ = [
    "DDIMScheduler", "DDPMScheduler", "FlowMatchScheduler", "FlowMatchSchedulerOutput", "shift_time", "sigma_to_t",
    "t_to_sigma", "GuidanceSchedule", "apply_cfg", "cfg_combine", "cfg_inputs", "cfg_labels", "causal_mask", "level_mask", "proximity_mask",
    "raster_levels", "raster_mask", "ring_levels",
]
