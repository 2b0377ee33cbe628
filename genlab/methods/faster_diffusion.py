"""Faster Diffusion: encoder propagation on diffusers' own UNets (genlab.acceleration.encoder_propagation), shown on
base models trained here — a class-conditional pixel UNet2DModel, a text-to-image latent UNet2DConditionModel and
a text-to-video UNet3DConditionModel, all eps-prediction on a 1000-step chain (baseline: the same UNet sampled
plainly)."""

from ..errors import GenlabError
from ..registry import register_method
from ..training.builders import PipelineBuilder, check_section_types

UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel", "UNet3DConditionModel")


class UNetBuilder(PipelineBuilder):
    """kind: unet — `model: {class: UNet2DModel | UNet2DConditionModel | UNet3DConditionModel, <its config>}`, the
    diffusers class itself with the sizes, channels and conditioning filled in from the data, the tokenizer and
    (text UNets) the MiniLM text encoder; or `init: <pipeline folder>` to go on training a saved UNet pipeline.
    `scheduler:` is the DDPM chain it trains on (saved as a DDIMScheduler for sampling). Saved as a UNetPipeline,
    or a UNetVideoPipeline for clips."""

    objective_type = "noise_prediction"

    @property
    def pipeline_class(self) -> str:
        return "UNetVideoPipeline" if self.video else "UNetPipeline"

    @property
    def video(self) -> bool:
        return self.dataset.videos is not None

    def build_model(self, spec: dict):
        import diffusers

        if self.recipe.get("init"):
            return self.model_from(self.recipe["init"], spec)
        if "preset" in spec:
            raise GenlabError("model.preset: a unet recipe names diffusers' config entries themselves")
        name = spec.pop("class", "UNet3DConditionModel" if self.video else "UNet2DModel")
        if name not in UNET_CLASSES:
            raise GenlabError(f"model.class must be one of {list(UNET_CLASSES)}, got {name!r}")
        if self.video != (name == "UNet3DConditionModel"):
            raise GenlabError(f"model.class {name} does not fit the data: clips need UNet3DConditionModel, images a "
                              "2-D UNet")
        if getattr(self.tokenizer, "is_discrete", False):
            raise GenlabError(f"a unet recipe needs a continuous tokenizer (pixels or kl), got "
                              f"{type(self.tokenizer).__name__}")
        cls = getattr(diffusers, name)
        check_section_types("model", spec, cls)
        c, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        fixed = dict(sample_size=h, in_channels=c, out_channels=c)
        self.text_encoder = None
        if name == "UNet2DModel":
            fixed["num_class_embeds"] = self.dataset.num_classes + 1  # the last id: CFG's null class
        else:
            from ..text_encoder import MiniLMTextEncoder

            if self.dataset.captions is None:
                raise GenlabError(f"{name} is text-conditioned; the {self.dataset.name} data set has no captions")
            self.text_encoder = MiniLMTextEncoder()
            fixed["cross_attention_dim"] = self.text_encoder.hidden_size
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        return cls(**{**spec, **fixed})

    def model_from(self, init: str, spec: dict):
        """`init: <pipeline folder>`: go on training that pipeline's UNet, with its tokenizer and text encoder (a
        fresh optimizer, warm-up and schedule), on this recipe's data."""
        from ..pipelines.loading import load_pipeline

        if spec or "tokenizer" in self.recipe:
            raise GenlabError("a unet recipe with init: takes its UNet and tokenizer from that folder; leave out the "
                              "model and tokenizer sections")
        pipe = load_pipeline(init)
        if type(pipe).__name__ != self.pipeline_class:
            raise GenlabError(f"init: {init} holds a {type(pipe).__name__}; this recipe's data need a "
                              f"{self.pipeline_class}")
        unet, self.tokenizer, self.text_encoder = pipe.unet, pipe.image_tokenizer, pipe.text_encoder
        c, h, _ = self.tokenizer.latent_shape(self.dataset.image_size)
        if (unet.config.in_channels, unet.config.sample_size) != (c, h):
            raise GenlabError(f"init: {init} denoises {unet.config.in_channels} x {unet.config.sample_size} px "
                              f"latents; this recipe's {self.dataset.image_size} px data make {c} x {h}")
        if self.text_encoder is None and unet.config.num_class_embeds != self.dataset.num_classes + 1:
            raise GenlabError(f"init: {init} has {unet.config.num_class_embeds - 1} classes; the "
                              f"{self.dataset.name} data set has {self.dataset.num_classes}")
        if self.text_encoder is not None and self.dataset.captions is None:
            raise GenlabError(f"init: {init} is text-conditioned; the {self.dataset.name} data set has no captions")
        return unet.train()

    def make_objective(self, objective_cls, spec: dict):
        from diffusers import DDIMScheduler, DDPMScheduler

        chain = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
                 **self.recipe.get("scheduler", {})}
        # No x0 clipping by default: on the cosine chain the first steps' x0 estimates are far outside [-1, 1], and
        # clipping them at every DDIM step with CFG saturates the samples (unet-digits, DDIM-50, CFG 3: 42% class
        # accuracy with clipping, 100% without).
        chain.setdefault("clip_sample", False)
        self.train_scheduler = DDPMScheduler(**chain)
        self.scheduler = DDIMScheduler.from_config(self.train_scheduler.config)
        key = "video" if self.video else "pixel_values"
        return objective_cls(self.train_scheduler, self.tokenizer, text_encoder=self.text_encoder, input_key=key,
                             **spec)

    def pipeline_components(self, model) -> dict:
        text = self.text_encoder is not None
        components = dict(unet=model, scheduler=self.scheduler, image_tokenizer=self.tokenizer,
                          text_encoder=self.text_encoder,
                          class_names=None if text else list(self.dataset.class_names))
        if self.video:
            components["num_frames"] = int(self.dataset.videos.shape[1])
        return components

    def preview_inputs(self, pipe) -> dict:
        if self.text_encoder is not None:
            return {"prompt": list(self.dataset.captions[:8])}
        return super().preview_inputs(pipe)


register_method(
    "faster_diffusion",
    description="Faster Diffusion: UNet encoder propagation (key steps, batched decoders, prior noise injection) "
                "on diffusers' UNets (baseline: the same UNet sampled plainly)",
    pipelines={"UNetPipeline": "genlab.pipelines.unet", "UNetVideoPipeline": "genlab.pipelines.unet"},
    recipe_kinds={"unet": UNetBuilder},
    objectives={"noise_prediction": "genlab.training.noise_prediction:NoisePredictionObjective"},
    benches={"faster-diffusion": "genlab.eval.bench_faster_diffusion:BENCH"},
)
