"""Solved statistical-DP schedules, stored with the weights they were measured on.

A schedule (the key steps of a reuse policy statdp(K)) depends on everything that changes the template trajectory:
the sampling settings (`settings`, e.g. steps, guidance, scheduler shift) and K. A pipeline keeps its solved
schedules as a list of plain dicts in its config (model_index.json), so a shipped folder never pays the template run;
`ScheduleStore` finds and adds entries in such a list. A folder with new weights starts without schedules.
"""

from __future__ import annotations

import torch

from .sharing import ReusePolicy, schedule_cost


class ScheduleStore:
    def __init__(self, entries: list[dict] | None = None):
        self.entries = [dict(e) for e in entries or []]

    @staticmethod
    def _key(settings: dict, num_steps: int) -> dict:
        return {**settings, "num_encoder_steps": int(num_steps)}

    def find(self, settings: dict, num_steps: int) -> list[int] | None:
        """The saved key steps for these settings and K, or None."""
        key = self._key(settings, num_steps)
        for entry in self.entries:
            if all(entry.get(k) == v for k, v in key.items()):
                return list(entry["key_steps"])
        return None

    def solve(self, settings: dict, policy: ReusePolicy, similarity: torch.Tensor, template_samples: int) -> list[int]:
        """Solve the DP on the (M, M) similarity of a template run, store the result (replacing an entry for the
        same settings and K) and return the key steps."""
        errors = 1 - similarity
        key_steps = policy.key_steps(errors.shape[0], errors)
        key = self._key(settings, policy.num_steps)
        entry = {**key, "key_steps": key_steps, "template_samples": int(template_samples),
                 "cost": schedule_cost(errors, key_steps)}
        self.entries = [e for e in self.entries if any(e.get(k) != v for k, v in key.items())] + [entry]
        return key_steps
