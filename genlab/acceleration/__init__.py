"""Training-free sampling accelerations, as hooks on unmodified models (diffusers' hook shape: a config,
apply / remove, state reset per call) and the reuse policies that say at which steps a branch is recomputed."""

from .encoder_sharing import (EncoderSharingConfig, EncoderSharingHook, apply_encoder_sharing, encoder_sharing,
                              remove_encoder_sharing)
from .schedule_store import ScheduleStore
from .sharing import (POLICY_NAMES, ReusePolicy, brute_force_statdp, schedule_cost, segment_costs, similarity_matrix,
                      solve_statdp, statdp_steps_for_rate)

__all__ = ["EncoderSharingConfig", "EncoderSharingHook", "POLICY_NAMES", "ReusePolicy", "ScheduleStore",
           "apply_encoder_sharing", "brute_force_statdp", "encoder_sharing", "remove_encoder_sharing",
           "schedule_cost", "segment_costs", "similarity_matrix", "solve_statdp", "statdp_steps_for_rate"]
