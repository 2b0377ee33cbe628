"""Evaluation metrics on images in [-1, 1]: class accuracy, classifier Fréchet distance, PSNR, SSIM, background speckle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance

from ..errors import GenlabError, check_positive_int
from .classifier import FeatureClassifier, load_classifier


def _check_images(images, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise GenlabError(f"{name} must be a tensor of shape (B, C, H, W), got {shape}")
    if images.shape[0] == 0:
        raise GenlabError(f"{name} is empty")
    if not images.is_floating_point():
        raise GenlabError(f"{name} must be a float tensor in [-1, 1], got dtype {images.dtype}")
    # A diverged generator yields NaNs; a metric silently reporting nan would hide that.
    if not torch.isfinite(images).all():
        raise GenlabError(f"{name} contain NaN or inf values")
    return images


def _get_classifier(classifier) -> FeatureClassifier:
    # A data-set name is accepted for convenience: metrics(..., classifier="digits").
    if isinstance(classifier, str):
        return load_classifier(classifier)
    if not isinstance(classifier, FeatureClassifier):
        raise GenlabError(
            f"classifier must be a FeatureClassifier or a data-set name, got {type(classifier).__name__}"
        )
    return classifier


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)])


def class_predictions(images, classifier, batch_size: int = 256) -> torch.Tensor:
    """The class ``classifier`` (a FeatureClassifier or shipped name) assigns each of ``images``, (N,) long."""
    images = _check_images(images)
    classifier = _get_classifier(classifier)
    batch_size = check_positive_int(batch_size, "batch_size")
    was_training = classifier.training
    classifier.eval()
    try:
        return _batched(classifier, images, batch_size).argmax(dim=1)
    finally:
        classifier.train(was_training)


def class_accuracy(images, labels, classifier, batch_size: int = 256) -> float:
    """Fraction in [0, 1] of ``images`` that ``classifier`` (a FeatureClassifier or shipped name) assigns ``labels``."""
    images = _check_images(images)
    classifier = _get_classifier(classifier)
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise GenlabError(
            f"labels must have shape ({len(images)},) to match the images, got {tuple(labels.shape)}"
        )
    n = classifier.config.num_classes
    if labels.numel() and (labels.min() < 0 or labels.max() >= n):
        raise GenlabError(
            f"labels must lie in [0, {n - 1}] for this classifier, got {labels.min().item()}..{labels.max().item()}"
        )
    pred = class_predictions(images, classifier, batch_size)
    return (pred == labels.cpu().long()).double().mean().item()


class _FeatureExtractor(nn.Module):
    """Adapter that lets torchmetrics' FID use a FeatureClassifier as its feature network.

    torchmetrics accepts any nn.Module as ``feature``; it reads the feature size from ``num_features`` (else it
    would probe the module with a dummy 299 px image) and, for a custom module, passes the images through
    unchanged: ``normalize`` only rescales inputs for its own Inception net. Images therefore stay in [-1, 1],
    which is what the classifier was trained on. Features are returned in float64 so that torchmetrics keeps the
    final value in float64 (it casts the result back to the features' dtype).
    """

    def __init__(self, classifier: FeatureClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.config.feature_dim

    def train(self, mode: bool = True):
        # Batch-norm statistics must never follow the scored images, whatever mode the metric is put in.
        super().train(mode)
        self.classifier.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images).double()


def frechet_distance(real_images, fake_images, classifier, batch_size: int = 256) -> float:
    """Classifier Fréchet distance between two image sets in [-1, 1].

    This is FID's formula (torchmetrics' FrechetInceptionDistance, float64 statistics) computed on the penultimate
    features of genlab's own small classifier (``load_classifier(name)``), NOT on Inception-v3 features: values are
    comparable only between runs scored with the same genlab classifier, never with published FID numbers. Lower
    is better; two samples of the same distribution score close to 0 (small sets are biased upwards, so compare
    runs at equal set sizes). Both sets need at least 2 images; they may differ in size and resolution.
    """
    real_images = _check_images(real_images, "real_images")
    fake_images = _check_images(fake_images, "fake_images")
    if len(real_images) < 2 or len(fake_images) < 2:
        raise GenlabError(
            f"frechet_distance needs at least 2 real and 2 fake images, got {len(real_images)} and {len(fake_images)}"
        )
    classifier = _get_classifier(classifier)
    batch_size = check_positive_int(batch_size, "batch_size")
    was_training = classifier.training
    extractor = _FeatureExtractor(classifier)
    # normalize=True documents that inputs are floats, not uint8; with a custom module torchmetrics does not rescale.
    metric = FrechetInceptionDistance(feature=extractor, normalize=True, reset_real_features=True)
    metric.to(next(classifier.parameters()).device)
    try:
        metric.eval()
        with torch.no_grad():
            for images, real in ((real_images, True), (fake_images, False)):
                for i in range(0, len(images), batch_size):
                    metric.update(images[i : i + batch_size], real=real)
            value = metric.compute()
    finally:
        classifier.train(was_training)
    # Rounding can leave tiny negative values for identical sets; a distance is never negative.
    return max(float(value), 0.0)


def color_names(images, threshold: float = 0.5) -> list[str]:
    """The shapes-palette colour drawn in each RGB image (in [-1, 1]): the mean colour of the pixels brighter than
    `threshold` (on [0, 1]; the black background and the antialiased rim excluded), matched to the nearest colour of
    the palette."""
    from ..data.shapes import COLORS

    images = _check_images(images)
    if images.shape[1] != 3:
        raise GenlabError(f"colours need RGB images, got {images.shape[1]} channel(s)")
    names = list(COLORS)
    palette = torch.tensor([COLORS[n] for n in names], dtype=torch.float64) / 255
    x = ((images.double().cpu().clamp(-1, 1) + 1) / 2).flatten(2)  # (B, 3, HW)
    bright = x.amax(1, keepdim=True) > threshold
    mean = (x * bright).sum(2) / bright.sum(2).clamp(min=1)  # (B, 3); black where nothing is drawn
    return [names[i] for i in torch.cdist(mean, palette).argmin(1).tolist()]


def color_accuracy(images, colors, threshold: float = 0.5) -> float:
    """Fraction of RGB `images` (in [-1, 1]) whose drawn colour (`color_names`) is the named one. For the shapes
    data set, whose captions name the colour."""
    from ..data.shapes import COLORS

    images = _check_images(images)
    if images.shape[1] != 3:
        raise GenlabError(f"color_accuracy needs RGB images, got {images.shape[1]} channel(s)")
    if len(colors) != len(images):
        raise GenlabError(f"color_accuracy needs one colour name per image, got {len(colors)} for {len(images)}")
    unknown = sorted(set(colors) - set(COLORS))
    if unknown:
        raise GenlabError(f"unknown colour(s) {unknown}; the shapes palette has {sorted(COLORS)}")
    return sum(a == c for a, c in zip(color_names(images, threshold), colors)) / len(colors)


def _check_pair(a, b):
    a = _check_images(a, "a")
    b = _check_images(b, "b")
    if a.shape != b.shape:
        raise GenlabError(
            f"images to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    # torchmetrics' image metrics take data_range on [0, 1]; genlab images live in [-1, 1].
    return (a.double() + 1) / 2, (b.double().to(a.device) + 1) / 2


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB of images ``a`` vs ``b`` in [-1, 1] (one MSE over the whole batch).

    Identical images give ``inf``.
    """
    a, b = _check_pair(a, b)
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


@torch.no_grad()
def reconstruction_psnr(tokenizer, images: torch.Tensor, batch_size: int = 256) -> float:
    """PSNR in dB of `tokenizer.reconstruct(images)` (clamped to [-1, 1], as it would be shown) against `images`:
    one PSNR over all pixels of all images, not a mean of per-image PSNRs, so a few perfect images cannot hide bad
    ones. Reconstructions are computed `batch_size` images at a time."""
    batch_size = check_positive_int(batch_size, "batch_size")
    images = tokenizer.check_images(images)
    recon = torch.cat([tokenizer.reconstruct(b).float().clamp(-1, 1) for b in images.split(batch_size)])
    return psnr(recon, images.float())


def background_speckle(images, background_from=None, dark: float = -0.9) -> float:
    """High-frequency energy of the background: the mean of |x - its 3x3 box mean| (channel-averaged, in [-1, 1]
    units) over the pixels whose whole 5x5 neighbourhood is dark (< `dark`) in `background_from` (the same images'
    reference on the same noise, e.g. the unaccelerated samples; default: the images themselves), so edges of the
    object do not count. For data sets with a black background (digits, fashion); nan where no pixel is background.
    Residual sampling noise in an empty background shows here long before it moves a classifier's features."""
    images = _check_images(images).float()
    reference = images if background_from is None else _check_images(background_from, "background_from").float()
    if reference.shape != images.shape:
        raise GenlabError(f"background_from must have the images' shape {tuple(images.shape)}, "
                          f"got {tuple(reference.shape)}")
    gray = reference.mean(1, keepdim=True)
    background = (F.max_pool2d(gray, 5, stride=1, padding=2) < dark).float()
    blur = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    detail = (images - blur).abs().mean(1, keepdim=True)
    pixels = float(background.sum())
    return float((detail * background).sum()) / pixels if pixels else float("nan")


def ssim(a, b) -> float:
    """Mean structural similarity of images ``a`` vs ``b`` in [-1, 1]; 1.0 for identical images.

    Uses torchmetrics' Gaussian 11x11 window, shrunk to the largest odd size that fits images smaller than 11 px.
    """
    a, b = _check_pair(a, b)
    size = min(a.shape[-2:])
    kernel = min(11, size if size % 2 else size - 1)
    if kernel < 3:
        raise GenlabError(f"ssim needs images of at least 3x3 pixels, got {tuple(a.shape[-2:])}")
    return float(
        structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=kernel, sigma=1.5 * kernel / 11)
    )


def real_reference(
    dataset_name: str, split: str = "test", n: int | None = None, image_size: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Real images (N, C, H, W) in [-1, 1] of a data set, as the reference set for ``frechet_distance``.

    ``n`` draws a random subset (fixed by ``seed``) rather than the first images, which may be ordered by class.
    """
    from ..data import load_dataset

    images = load_dataset(dataset_name, split=split, image_size=image_size, seed=seed).images
    if n is None:
        return images
    n = check_positive_int(n, "n")
    if n > len(images):
        raise GenlabError(f"n={n} exceeds the {len(images)} images of {dataset_name} {split}")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx.sort().values]


def caption_attribute_accuracy(captions: list[str], attributes: list[dict]) -> dict:
    """How often captions say each attribute right. `attributes[i]` is the truth for caption i (a data set's
    `attributes`: shape, color, size, position / digit, thickness, slant); every key with string values is scored.
    The value a caption states is the longest known value of that key found in it as whole words ("top left" before
    "left"); none found counts as wrong. Returns {key: accuracy, ..., "mean": mean over the keys}."""
    import re

    if len(captions) != len(attributes) or not captions:
        raise GenlabError(f"caption_attribute_accuracy needs one attribute dict per caption, got {len(attributes)} "
                          f"for {len(captions)} captions")
    keys = sorted(k for k, v in attributes[0].items() if isinstance(v, str))
    values = {k: sorted({a[k] for a in attributes}, key=len, reverse=True) for k in keys}
    scores = {}
    for k in keys:
        hits = 0
        for caption, truth in zip(captions, attributes):
            said = next((v for v in values[k] if re.search(rf"(?<![\w-]){re.escape(v)}(?![\w-])", caption)), None)
            hits += said == truth[k]
        scores[k] = hits / len(captions)
    scores["mean"] = sum(scores[k] for k in keys) / len(keys) if keys else 0.0
    return scores
