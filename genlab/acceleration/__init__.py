"""Training-free sampling accelerations as reusable pieces (DDT encoder sharing; Faster Diffusion later)."""

from .sharing import (ReusePolicy, brute_force_statdp, schedule_cost, segment_costs, similarity_matrix, solve_statdp,
                      statdp_steps_for_rate)

__all__ = ["ReusePolicy", "brute_force_statdp", "schedule_cost", "segment_costs", "similarity_matrix",
           "solve_statdp", "statdp_steps_for_rate"]
