"""Evaluation: genlab's shipped feature classifiers and the metrics built on them; the benches (bench_*.py on the
harness in harness.py) and `genlab eval` (runner.py). Names are imported on first use.

Inception weights cannot be fetched at run time, so `frechet_distance` is a *classifier* Fréchet distance on
the penultimate features of a small per-data-set CNN (`load_classifier`); see genlab/eval/nets/README.md.
"""

from ..lazy_imports import lazy_attributes

_NAMES = {"FeatureClassifier": ".classifier", "available_classifiers": ".classifier", "load_classifier": ".classifier",
          **{name: ".metrics" for name in ("background_speckle", "caption_attribute_accuracy", "class_accuracy",
                                            "class_predictions", "color_accuracy", "color_names", "frechet_distance", "psnr",
                                            "real_reference", "reconstruction_psnr", "ssim")}}
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
__all__ = sorted(_NAMES)
