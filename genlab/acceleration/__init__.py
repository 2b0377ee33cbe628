"""Training-free sampling accelerations, as hooks on unmodified models (diffusers' hook shape: a config,
apply / remove, state reset per call) and the reuse policies that say at which steps a branch is recomputed:
DDT's encoder sharing (`encoder_sharing`) and Faster Diffusion's encoder propagation on diffusers' UNets
(`encoder_propagation`, key steps in `key_steps`)."""

from .encoder_sharing import (EncoderSharingConfig, EncoderSharingHook, apply_encoder_sharing, encoder_sharing,
                              remove_encoder_sharing)
from .encoder_propagation import (EncoderPropagationConfig, EncoderPropagationHook, NoiseInjection,
                                  apply_encoder_propagation, encoder_propagation, get_encoder_propagation,
                                  remove_encoder_propagation, statdp_key_steps)
from .key_steps import resolve_key_steps
from .schedule_store import ScheduleStore
from .sharing import (POLICY_NAMES, ReusePolicy, brute_force_statdp, schedule_cost, segment_costs, similarity_matrix,
                      solve_statdp, statdp_steps_for_rate)

__all__ = ["EncoderPropagationConfig", "EncoderPropagationHook", "EncoderSharingConfig", "EncoderSharingHook",
           "NoiseInjection", "apply_encoder_propagation", "encoder_propagation", "get_encoder_propagation",
           "remove_encoder_propagation", "resolve_key_steps", "statdp_key_steps", "POLICY_NAMES", "ReusePolicy", "ScheduleStore",
           "apply_encoder_sharing", "brute_force_statdp", "encoder_sharing", "remove_encoder_sharing",
           "schedule_cost", "segment_costs", "similarity_matrix", "solve_statdp", "statdp_steps_for_rate"]
