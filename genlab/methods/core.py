"""The shared parts every method builds on: tokenizers, schedulers, the text encoder, data, trainer, eval nets."""

import os

from ..registry import register_method

register_method(
    "core",
    description="shared tokenizers, schedulers, text encoder, data sets, trainer and evaluation networks",
    components={
        "PixelTokenizer": "genlab.tokenizers.pixels",
        "KLTokenizer": "genlab.tokenizers.kl",
        "VQTokenizer": "genlab.tokenizers.vq",
        "MultiScaleVQTokenizer": "genlab.tokenizers.multiscale_vq",
        "MiniLMTextEncoder": "genlab.text_encoder",
        "FlowMatchScheduler": "genlab.schedulers.flow_match",
        "GuidanceSchedule": "genlab.schedulers.guidance",
        "ReusePolicy": "genlab.acceleration.sharing",
        "FeatureClassifier": "genlab.eval.classifier",
        "load_dataset": "genlab.data",
        "Trainer": "genlab.training.trainer",
        "TrainConfig": "genlab.training.config",
    },
    recipe_kinds={"tokenizer": "genlab.training.builders:TokenizerBuilder"},
    objectives={"tokenizer": "genlab.training.objectives:TokenizerObjective"},
    benches={"speed": "genlab.eval.bench_speed:BENCH"},
    recipes=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training", "recipes"),
)
