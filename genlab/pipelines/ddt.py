"""DDT pipeline: FlowDiTPipeline's Euler loop with encoder sharing -> tokenizer.decode -> images.

Sampling: every step runs one batch [uncond ; cond] when guidance is on (labels [null ; y], same x and t),
v = v_u + w (v_c - v_u) for lo < t < hi and v = v_c elsewhere. Both halves are computed at every step, also outside
the interval, so the cached self-condition z always holds both halves from the same step.

Encoder sharing (`sharing=`, applied as the `genlab.acceleration.encoder_sharing` hook on the unmodified model): the
encoder runs only at key steps Φ and its z is reused until the next one.
* "none": Φ = every step;  "uniform" with refresh_rate = r: Φ = {i : i mod r == 0} (ceil(N / r) encoder calls; the
  paper's "share ratio" is 1 - 1/r);
* "statdp" with num_encoder_steps = K (or refresh_rate = r, meaning K = ceil(N / r), the same budget as uniform):
  Φ solved by DDT's dynamic program from the step-to-step similarity of z on a template run (8 noises and labels
  from a seed-0 generator, full recompute, same guidance, steps and scheduler settings);
* a `genlab.acceleration.ReusePolicy` instance (e.g. `ReusePolicy.explicit([0, 3, 7])`).
`sharing_ratio` is the old name of `refresh_rate` (deprecated: it is a rate, not the share ratio 1 - 1/r).

DP schedules are stored in the pipeline config (`sharing_schedules`, written to model_index.json by save_pretrained
and read back by DiffusionPipeline.from_pretrained) through `genlab.acceleration.ScheduleStore`. A pipeline solves a
missing schedule once, on first use, from an unshared template run (never from a shared run, whose z would be stale);
`pipe.solve_sharing_schedule(...)` does it explicitly (e.g. before save_pretrained so that a shipped folder never pays
the template run).
"""

from __future__ import annotations

import json
import warnings

import torch

from ..acceleration import EncoderSharingConfig, ReusePolicy, ScheduleStore, encoder_sharing, similarity_matrix
from ..errors import GenlabError
from ..schedulers import GuidanceSchedule
from .dit_flow import FlowDiTPipeline

TEMPLATE_SAMPLES = 8  # the official template batch size


def _refresh_rate(refresh_rate, sharing_ratio):
    """The refresh rate, accepting the deprecated name `sharing_ratio` with a warning."""
    if sharing_ratio is None:
        return refresh_rate
    warnings.warn("DDTPipeline: `sharing_ratio` is deprecated, pass `refresh_rate` (the encoder runs every r-th "
                  "step; the share ratio is 1 - 1/r)", FutureWarning, stacklevel=3)
    if refresh_rate is not None:
        raise GenlabError("pass refresh_rate only (sharing_ratio is its deprecated name), not both")
    return sharing_ratio


class DDTPipeline(FlowDiTPipeline):
    """Components: `transformer` (DDTModel: forward(x, t, class_labels, z=None) -> DDTOutput(sample, z),
    `null_class`), `scheduler` (FlowMatchScheduler), `image_tokenizer` (a continuous tokenizer: pixels or KL).

    After each call `pipe.sharing_stats` holds the key steps and the numbers of encoder and decoder calls
    (one call = one model evaluation of the whole, possibly CFG-doubled, batch)."""

    acceleration_label = "encoder sharing (encoder every r-th step; statdp picks the steps; re-timed z by default)"
    acceleration_choices = {"sharing": ["statdp", "uniform"], "refresh_rate": [2, 3, 4, 5], "retime_shared": [True, False]}
    acceleration_off = {"sharing": "none"}
    double_every_step = True  # both halves' z from the same step

    def __init__(self, transformer, scheduler, image_tokenizer, sharing_schedules: list | None = None):
        super().__init__(transformer, scheduler, image_tokenizer)
        self.register_to_config(sharing_schedules=ScheduleStore(sharing_schedules).entries)
        self._similarity_cache: dict[str, torch.Tensor] = {}  # template key -> (M, M) similarity, this session only
        self.sharing_stats: dict = {}

    # ------------------------------------------------------------ sharing schedules
    def sharing_policy(self, sharing, refresh_rate, num_encoder_steps, num_evaluations: int,
                       sharing_ratio=None) -> ReusePolicy:
        """Turn the __call__ arguments into a ReusePolicy; every inconsistent combination is a GenlabError."""
        return ReusePolicy.from_arguments(sharing, _refresh_rate(refresh_rate, sharing_ratio), num_encoder_steps,
                                          num_evaluations)

    def _template_key(self, num_inference_steps: int, guidance: GuidanceSchedule) -> dict:
        """Everything that changes the template trajectory (and so the DP statistics)."""
        sc = self.scheduler.config
        guided = guidance.active
        interval = [float(v) for v in guidance.interval] if guided and guidance.kind == "interval" else None
        return {"num_inference_steps": int(num_inference_steps),
                "guidance_scale": float(guidance.scale) if guided else 1.0, "guidance_interval": interval,
                "shift": float(sc.shift), "last_step": None if sc.last_step is None else float(sc.last_step),
                "solver": sc.solver}

    def find_sharing_schedule(self, num_inference_steps: int, num_encoder_steps: int,
                              guidance: GuidanceSchedule) -> list[int] | None:
        """The saved DP key steps for these settings, or None."""
        store = ScheduleStore(self.config.sharing_schedules)
        return store.find(self._template_key(num_inference_steps, guidance), num_encoder_steps)

    @torch.no_grad()
    def sharing_similarity(self, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                           guidance_interval: tuple[float, float] | None = None,
                           num_template_samples: int = TEMPLATE_SAMPLES, refresh: bool = False) -> torch.Tensor:
        """(M, M) float64 cosine similarity of z between model evaluations of an unshared template run.

        Template: `num_template_samples` noises, then as many labels in [0, num_classes), from a seed-0 CPU generator;
        the encoder runs at every step; z includes the unconditional half."""
        steps = self.check_steps(num_inference_steps)
        guidance = self.guidance_schedule(guidance_scale, guidance_interval)
        key = json.dumps({**self._template_key(steps, guidance), "samples": num_template_samples}, sort_keys=True)
        if refresh or key not in self._similarity_cache:
            cfg = self.transformer.config
            device = self._execution_device
            g = torch.Generator().manual_seed(0)
            shape = (num_template_samples, cfg.in_channels, cfg.sample_size, cfg.sample_size)
            x = self.prepare_latents(shape, g, None, device, self.transformer.dtype)
            labels = torch.randint(0, cfg.num_classes, (num_template_samples,), generator=g).to(device)
            self.scheduler.set_timesteps(steps, device=device)
            every_step = range(self.scheduler.model_evaluations(steps))
            with encoder_sharing(self.transformer, EncoderSharingConfig(every_step, record=True)) as hook:
                self.denoise(x, labels, guidance)
            self._similarity_cache[key] = similarity_matrix(hook.state.recorded)
        return self._similarity_cache[key]

    def solve_sharing_schedule(self, num_inference_steps: int = 30, num_encoder_steps=None, refresh_rate=None,
                               guidance_scale: float = 2.0, guidance_interval: tuple[float, float] | None = None,
                               num_template_samples: int = TEMPLATE_SAMPLES, refresh: bool = True,
                               sharing_ratio=None) -> list[int]:
        """Measure the template statistics (afresh, or with refresh=False reuse this session's), solve the DP for K
        key steps (K = num_encoder_steps, or ceil(M / refresh_rate)) and store the result in the pipeline config
        (saved by save_pretrained). Returns the key steps."""
        steps = self.check_steps(num_inference_steps)
        guidance = self.guidance_schedule(guidance_scale, guidance_interval)
        policy = self.sharing_policy("statdp", refresh_rate, num_encoder_steps,
                                     self.scheduler.model_evaluations(steps), sharing_ratio)
        sim = self.sharing_similarity(steps, guidance_scale, guidance_interval, num_template_samples, refresh=refresh)
        return self._store_schedule(steps, policy, guidance, sim, num_template_samples)

    def _store_schedule(self, steps, policy, guidance, similarity, num_template_samples) -> list[int]:
        store = ScheduleStore(self.config.sharing_schedules)
        key_steps = store.solve(self._template_key(steps, guidance), policy, similarity, num_template_samples)
        self.register_to_config(sharing_schedules=store.entries)
        return key_steps

    def key_steps(self, policy: ReusePolicy, num_inference_steps: int, guidance: GuidanceSchedule) -> list[int]:
        """Φ for this run: from the policy, or for statdp the saved schedule (solved now if missing)."""
        evaluations = self.scheduler.model_evaluations(num_inference_steps)
        if not policy.needs_statistics:
            return policy.key_steps(evaluations)
        found = self.find_sharing_schedule(num_inference_steps, policy.num_steps, guidance)
        if found is not None:
            return found
        lo_hi = tuple(guidance.interval) if guidance.kind == "interval" else None
        sim = self.sharing_similarity(num_inference_steps, guidance.scale, lo_hi)
        return self._store_schedule(num_inference_steps, policy, guidance, sim, TEMPLATE_SAMPLES)

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(self, class_labels=None, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                 guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 sharing: str | ReusePolicy = "none", refresh_rate: int | None = None,
                 num_encoder_steps: int | None = None, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs: list[str] = ("latents",), sharing_ratio: int | None = None,
                 retime_shared: bool = False):
        """Generate one image per entry of `class_labels` (ints or class names).

        guidance_scale: CFG weight (1 = no guidance); guidance_interval: (lo, hi) to guide only for lo < t < hi
        (t = 0 noise, 1 data; the paper's release setting is (0.3, 1.0)); generator: torch.Generator for the initial
        noise; latents: start noise yourself. sharing: "none" | "uniform" (with refresh_rate r: encoder every r-th
        step) | "statdp" (with num_encoder_steps K, or refresh_rate r for K = ceil(N / r)) | a ReusePolicy.
        retime_shared: at the steps that reuse the encoder, rebuild z from the kept encoder state with the current t
        (genlab's option; the official sampler reuses z with its key step's t, which leaves background speckle when
        the reuse spans are long: bench/ddt.md). No effect without sharing.
        callback_on_step_end(pipe, step, t, {"latents": x}) as in FlowDiTPipeline.
        """
        self.check_components()
        steps, labels, guidance, x = self.class_conditional_inputs(
            class_labels, num_inference_steps, guidance_scale, guidance_interval, generator, latents, output_type)
        policy = self.sharing_policy(sharing, refresh_rate, num_encoder_steps, self.scheduler.model_evaluations(steps),
                                     sharing_ratio)
        key_steps = self.key_steps(policy, steps, guidance)  # may run the template once (its own generator)
        self.scheduler.set_timesteps(steps, device=self._execution_device)
        with encoder_sharing(self.transformer, EncoderSharingConfig(key_steps, retime=bool(retime_shared))) as hook:
            x = self.denoise(x, labels, guidance, callback_on_step_end, callback_on_step_end_tensor_inputs)
        self.sharing_stats = {**hook.stats, "policy": policy.kind}
        return self.image_output(self.image_tokenizer.decode(x), output_type, return_dict)
