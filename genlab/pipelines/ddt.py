"""DDT pipeline: noise -> Euler ODE with interval CFG and encoder sharing -> tokenizer.decode -> images.

Sampling (DDT spec §4): every step runs one batch [uncond ; cond] when guidance is on (labels [null ; y], same x and
t), v = v_u + w (v_c - v_u) for lo < t < hi and v = v_c elsewhere. Both halves are computed at every step, also
outside the interval, so the cached self-condition z always holds both halves from the same step (spec pitfall 13).

Encoder sharing (`sharing=`): the encoder runs only at key steps Φ and its z is reused until the next one.
* "none": Φ = every step;  "uniform" with sharing_ratio = r: Φ = {i : i mod r == 0} (ceil(N / r) encoder calls;
  the paper's "share ratio" is 1 - 1/r);
* "statdp" with num_encoder_steps = K (or sharing_ratio = r, meaning K = ceil(N / r), the same budget as uniform):
  Φ solved by DDT's dynamic program from the step-to-step similarity of z on a template run (8 noises and labels
  from a seed-0 generator, full recompute, same guidance, steps and scheduler settings);
* a `genlab.acceleration.ReusePolicy` instance (e.g. `ReusePolicy.explicit([0, 3, 7])`).

DP schedules are stored in the pipeline config (`sharing_schedules`, written to model_index.json by save_pretrained
and read back by DiffusionPipeline.from_pretrained), keyed by (N, K, guidance scale and interval, scheduler shift,
last_step and solver). A pipeline solves a missing schedule once, on first use, from an unshared template run (never
from a shared run: pitfall 11); `pipe.solve_sharing_schedule(...)` does it explicitly (e.g. before save_pretrained so
that a shipped folder never pays the template run). A schedule belongs to the weights it was measured on: a pipeline
folder with new weights starts without schedules (training saves a fresh pipeline).
"""

from __future__ import annotations

import json

import torch

from ..acceleration.sharing import ReusePolicy, schedule_cost, similarity_matrix, statdp_steps_for_rate
from ..errors import GenlabError
from ..schedulers import GuidanceSchedule, apply_cfg
from .base import GenlabImageOutput, GenlabPipeline

SHARING_NAMES = ("none", "uniform", "statdp")
TEMPLATE_SAMPLES = 8  # the official template batch size


class DDTPipeline(GenlabPipeline):
    """Components: `transformer` (DDTModel: forward(x, t, class_labels, z=None) -> (velocity, z), `null_class`),
    `scheduler` (FlowMatchScheduler), `image_tokenizer` (a continuous tokenizer: pixels or KL).

    After each call `pipe.sharing_stats` holds the key steps and the numbers of encoder and decoder calls
    (one call = one model evaluation of the whole, possibly CFG-doubled, batch)."""

    model_cpu_offload_seq = "transformer->image_tokenizer"
    acceleration_label = "encoder sharing (encoder every r-th step; statdp picks the steps)"
    acceleration_choices = {"sharing": ["statdp", "uniform"], "sharing_ratio": [2, 3, 4, 5]}
    acceleration_off = {"sharing": "none"}

    def __init__(self, transformer, scheduler, image_tokenizer, sharing_schedules: list | None = None):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, image_tokenizer=image_tokenizer)
        self.register_to_config(sharing_schedules=[dict(entry) for entry in sharing_schedules or []])
        self._similarity_cache: dict[str, torch.Tensor] = {}  # template key -> (M, M) similarity, this session only
        self.sharing_stats: dict = {}

    @property
    def class_names(self) -> list[str] | None:
        return self.transformer.config.get("class_names")

    # ------------------------------------------------------------ sharing schedules
    def sharing_policy(self, sharing, sharing_ratio, num_encoder_steps, num_evaluations: int) -> ReusePolicy:
        """Turn the __call__ arguments into a ReusePolicy; every inconsistent combination is a GenlabError."""
        if isinstance(sharing, ReusePolicy):
            if sharing_ratio is not None or num_encoder_steps is not None:
                raise GenlabError("pass sharing_ratio / num_encoder_steps only with sharing='uniform' or 'statdp', "
                                  "not with a ReusePolicy")
            return sharing
        if sharing not in SHARING_NAMES:
            raise GenlabError(f"unknown sharing {sharing!r}; choose from {list(SHARING_NAMES)} or pass a ReusePolicy")
        if sharing == "none":
            if sharing_ratio is not None or num_encoder_steps is not None:
                raise GenlabError("sharing='none' runs the encoder at every step; sharing_ratio / num_encoder_steps "
                                  "need sharing='uniform' or 'statdp'")
            return ReusePolicy.none()
        if sharing_ratio is not None and isinstance(sharing_ratio, float) and not sharing_ratio.is_integer():
            raise GenlabError(f"sharing_ratio is the refresh rate r, an integer >= 1 (the encoder runs every r-th "
                              f"step; the paper's share ratio is 1 - 1/r), got {sharing_ratio}")
        if sharing == "uniform":
            if num_encoder_steps is not None:
                raise GenlabError("uniform sharing is set by sharing_ratio (refresh every r steps); "
                                  "num_encoder_steps is for sharing='statdp'")
            return ReusePolicy.from_name("uniform", rate=sharing_ratio)
        if sharing_ratio is not None and num_encoder_steps is not None:
            raise GenlabError("statdp sharing takes either num_encoder_steps (K) or sharing_ratio (r), not both")
        if sharing_ratio is not None:
            num_encoder_steps = statdp_steps_for_rate(num_evaluations, sharing_ratio)
        policy = ReusePolicy.from_name("statdp", num_steps=num_encoder_steps)
        if policy.num_steps > num_evaluations:
            raise GenlabError(f"num_encoder_steps K = {policy.num_steps} exceeds the {num_evaluations} model "
                              "evaluations of this run")
        return policy

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
        key = {**self._template_key(num_inference_steps, guidance), "num_encoder_steps": int(num_encoder_steps)}
        for entry in self.config.sharing_schedules:
            if all(entry.get(k) == v for k, v in key.items()):
                return list(entry["key_steps"])
        return None

    def sharing_similarity(self, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                           guidance_interval: tuple[float, float] | None = None,
                           num_template_samples: int = TEMPLATE_SAMPLES, refresh: bool = False) -> torch.Tensor:
        """(M, M) float64 cosine similarity of z between model evaluations of an unshared template run.

        Template: `num_template_samples` noises, then as many labels in [0, num_classes), from a seed-0 CPU generator;
        the encoder runs at every step (never a shared run: pitfall 11); z includes the unconditional half."""
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
            zs: list[torch.Tensor] = []
            self._denoise(x, labels, guidance, ReusePolicy.none().key_steps(len(self.scheduler.timesteps)), record=zs)
            self._similarity_cache[key] = similarity_matrix(zs)
        return self._similarity_cache[key]

    def solve_sharing_schedule(self, num_inference_steps: int = 30, num_encoder_steps=None, sharing_ratio=None,
                               guidance_scale: float = 2.0, guidance_interval: tuple[float, float] | None = None,
                               num_template_samples: int = TEMPLATE_SAMPLES, refresh: bool = True) -> list[int]:
        """Measure the template statistics (afresh, or with refresh=False reuse this session's), solve the DP for K
        key steps (K = num_encoder_steps, or ceil(M / sharing_ratio)) and store the result in the pipeline config
        (saved by save_pretrained). Returns the key steps."""
        steps = self.check_steps(num_inference_steps)
        guidance = self.guidance_schedule(guidance_scale, guidance_interval)
        evaluations = self.scheduler.model_evaluations(steps)
        policy = self.sharing_policy("statdp", sharing_ratio, num_encoder_steps, evaluations)
        sim = self.sharing_similarity(steps, guidance_scale, guidance_interval, num_template_samples, refresh=refresh)
        return self._store_schedule(steps, policy, guidance, 1 - sim, num_template_samples)

    def _store_schedule(self, steps, policy, guidance, errors, num_template_samples) -> list[int]:
        key_steps = policy.key_steps(errors.shape[0], errors)
        key = {**self._template_key(steps, guidance), "num_encoder_steps": policy.num_steps}
        entry = {**key, "key_steps": key_steps, "template_samples": int(num_template_samples),
                 "cost": schedule_cost(errors, key_steps)}
        others = [e for e in self.config.sharing_schedules if any(e.get(k) != v for k, v in key.items())]
        self.register_to_config(sharing_schedules=others + [entry])
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
        return self._store_schedule(num_inference_steps, policy, guidance, 1 - sim, TEMPLATE_SAMPLES)

    # ------------------------------------------------------------ sampling
    def _denoise(self, x, labels, guidance: GuidanceSchedule, key_steps, record: list | None = None):
        """Run the scheduler (already set) from x; recompute z at the evaluations in key_steps, reuse it in between.
        Appends each freshly computed z to `record` when given. Returns the final sample."""
        model = self.transformer
        doubled = guidance.active  # [uncond ; cond] at every step so both halves' z come from the same step
        labels_in = torch.cat([torch.full_like(labels, model.null_class), labels]) if doubled else labels
        recompute = set(key_steps)
        if 0 not in recompute:
            raise GenlabError("the key steps must include step 0: z does not exist before the first encoder call")
        encoder_calls = decoder_calls = 0
        z = None
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            t = float(t)
            x_in = torch.cat([x, x]) if doubled else x
            if i in recompute:
                z = None
            v, z_out = model(x_in, torch.full((x_in.shape[0],), t, device=x.device, dtype=x.dtype), labels_in, z)
            if z is None:
                encoder_calls += 1
                if record is not None:
                    record.append(z_out.detach().float().cpu())
            z = z_out
            decoder_calls += 1
            if doubled:
                scale = guidance(t)
                v_uncond, v_cond = v.chunk(2)
                v = v_cond if scale == 1.0 else apply_cfg(v_uncond, v_cond, scale)
            x = self.scheduler.step(v, t, x).prev_sample
        self.sharing_stats = dict(key_steps=sorted(recompute), encoder_calls=encoder_calls,
                                  decoder_calls=decoder_calls)
        return x

    @torch.no_grad()
    def __call__(self, class_labels=None, num_inference_steps: int = 30, guidance_scale: float = 2.0,
                 guidance_interval: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", return_dict: bool = True,
                 sharing: str | ReusePolicy = "none", sharing_ratio: int | None = None,
                 num_encoder_steps: int | None = None):
        """Generate one image per entry of `class_labels` (ints or class names).

        guidance_scale: CFG weight (1 = no guidance); guidance_interval: (lo, hi) to guide only for lo < t < hi
        (t = 0 noise, 1 data; the paper's release setting is (0.3, 1.0)); generator: torch.Generator for the initial
        noise; latents: start noise yourself. sharing: "none" | "uniform" (with sharing_ratio r: encoder every r-th
        step) | "statdp" (with num_encoder_steps K, or sharing_ratio r for K = ceil(N / r)) | a ReusePolicy.
        """
        steps, labels, guidance, x = self.class_conditional_inputs(
            class_labels, num_inference_steps, guidance_scale, guidance_interval, generator, latents, output_type)
        device = self._execution_device
        policy = self.sharing_policy(sharing, sharing_ratio, num_encoder_steps, self.scheduler.model_evaluations(steps))

        key_steps = self.key_steps(policy, steps, guidance)  # may run the template once (its own generator)
        self.scheduler.set_timesteps(steps, device=device)
        x = self._denoise(x, labels, guidance, key_steps)
        self.sharing_stats["policy"] = policy.kind

        images = self.image_tokenizer.decode(x)
        self.maybe_free_model_hooks()
        images = self.to_output(images, output_type)
        return GenlabImageOutput(images=images) if return_dict else (images,)
