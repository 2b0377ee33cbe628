"""Evaluation: genlab's shipped feature classifiers and the metrics built on them.

Inception weights cannot be fetched at run time, so `frechet_distance` is a *classifier* Fréchet distance on
the penultimate features of a small per-data-set CNN (`load_classifier`); see genlab/eval/nets/README.md.
"""

from .classifier import FeatureClassifier, available_classifiers, load_classifier
from .metrics import class_accuracy, frechet_distance, psnr, real_reference, ssim

__all__ = [
    "FeatureClassifier",
    "available_classifiers",
    "class_accuracy",
    "frechet_distance",
    "load_classifier",
    "psnr",
    "real_reference",
    "ssim",
]
