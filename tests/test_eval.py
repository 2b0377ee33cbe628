"""genlab.eval: shipped feature classifiers, classifier Fréchet distance, accuracy, PSNR / SSIM."""

import os

import pytest
import torch
import torch.nn.functional as F

from genlab.data import load_dataset
from genlab.errors import GenlabError
from genlab.eval import (
    FeatureClassifier,
    available_classifiers,
    background_speckle,
    class_accuracy,
    frechet_distance,
    load_classifier,
    psnr,
    real_reference,
    ssim,
)
from genlab.eval.classifier import NETS_DIR
from genlab.eval.train_classifier import train_classifier

TARGETS = {"digits": 0.97, "fashion": 0.90, "shapes": 0.98}
N_TEST = 400  # enough images for a stable accuracy, few enough to stay fast


@pytest.fixture(scope="module")
def fashion():
    ds = load_dataset("fashion", split="test")
    return ds.images[:600], ds.labels[:600], load_classifier("fashion")


def test_available_classifiers_are_shipped_and_small():
    assert set(TARGETS) <= set(available_classifiers())
    for name in TARGETS:
        weights = os.path.join(NETS_DIR, name, "diffusion_pytorch_model.safetensors")
        assert os.path.getsize(weights) < 2 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_shipped_classifier_accuracy(name):
    ds = load_dataset(name, split="test")
    model = load_classifier(name)
    assert model.config.num_classes == ds.num_classes and model.config.in_channels == ds.channels
    acc = class_accuracy(ds.images[:N_TEST], ds.labels[:N_TEST], model)
    assert acc >= TARGETS[name] - 0.02


def test_shuffled_labels_give_chance_accuracy(fashion):
    images, labels, model = fashion
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert class_accuracy(images, labels, model) > 0.85
    assert abs(class_accuracy(images, shuffled, model) - 0.1) < 0.06


def test_frechet_distance_orders_distributions(fashion):
    images, labels, model = fashion
    half_a, half_b = images[:300], images[300:]
    noise = torch.randn(images[:300].shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    one_class = half_b[labels[300:] == 0]
    same = frechet_distance(half_a, half_b, model)
    assert same >= 0
    assert 5 * same < frechet_distance(half_a, noise, model)
    assert 5 * same < frechet_distance(half_a, one_class, model)


def test_frechet_distance_of_identical_sets_is_zero(fashion):
    images, _, model = fashion
    assert frechet_distance(images, images, model) < 1e-6
    assert frechet_distance(images, images.flip(0), model) < 1e-6  # order does not matter


def test_frechet_distance_accepts_other_resolution_and_name():
    real = real_reference("digits", n=300)
    upscaled = F.interpolate(real, size=32, mode="bilinear", align_corners=False)
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert frechet_distance(real, upscaled, "digits") < 0.2 * frechet_distance(real, noise, "digits")


def test_classifier_resizes_and_converts_channels():
    model = load_classifier("digits")  # a 16 px gray net
    ds32 = load_dataset("digits", split="test", image_size=32)
    assert class_accuracy(ds32.images, ds32.labels, model) >= TARGETS["digits"] - 0.03
    x = ds32.images[:8]
    assert model.features(x).shape == (8, model.config.feature_dim)
    # RGB input is averaged to gray: three equal channels must score exactly like the gray image.
    torch.testing.assert_close(model(x.repeat(1, 3, 1, 1)), model(x))
    with pytest.raises(GenlabError, match="channel"):
        load_classifier("shapes")(x)  # an RGB net cannot guess colours from gray
    with pytest.raises(GenlabError, match="shape"):
        model(x[0])


def test_psnr_and_ssim():
    x = real_reference("shapes", n=32)
    gen = torch.Generator().manual_seed(0)
    noisy = [x + s * torch.randn(x.shape, generator=gen) for s in (0.05, 0.1, 0.3)]
    p = [psnr(x, n) for n in noisy]
    assert psnr(x, x) == float("inf") or psnr(x, x) > 100
    assert p[0] > p[1] > p[2]
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    s = [ssim(x, n) for n in noisy]
    assert 1.0 > s[0] > s[1] > s[2]
    small = x[:, :, :8, :8]  # smaller than the 11 px SSIM window
    assert ssim(small, small) == pytest.approx(1.0, abs=1e-6)


def test_background_speckle_sees_noise_in_the_background_only(fashion):
    x = fashion[0][:64]
    assert background_speckle(x) < 1e-3  # real fashion images: a black, flat background
    gen = torch.Generator().manual_seed(0)
    levels = [background_speckle((x + s * torch.randn(x.shape, generator=gen)).clamp(-1, 1), x) for s in (0.02, 0.1)]
    assert levels[1] > levels[0] > 5 * background_speckle(x)
    object_only = x.clone()  # noise on the object, none on the background: scored like the clean images
    bright = x >= -0.9
    object_only[bright] += 0.3 * torch.randn(int(bright.sum()), generator=gen)
    assert background_speckle(object_only, x) == pytest.approx(background_speckle(x), abs=1e-7)
    assert background_speckle(torch.zeros(2, 1, 8, 8)) != background_speckle(torch.zeros(2, 1, 8, 8))  # nan
    with pytest.raises(GenlabError, match="background_from must have"):
        background_speckle(x, x[:2])


def test_user_mistakes_raise_genlab_error(fashion):
    images, labels, model = fashion
    with pytest.raises(GenlabError, match="digits"):
        load_classifier("no-such-net")
    with pytest.raises(GenlabError, match="labels"):
        class_accuracy(images[:10], labels[:9], model)
    with pytest.raises(GenlabError, match="at least 2"):
        frechet_distance(images[:10], images[:1], model)
    with pytest.raises(GenlabError, match="shape"):
        frechet_distance(images[0], images, model)
    with pytest.raises(GenlabError, match="NaN"):
        frechet_distance(images[:4], torch.full((4, 1, 32, 32), float("nan")), model)
    with pytest.raises(GenlabError, match="same shape"):
        psnr(images[:4], images[:3])
    with pytest.raises(GenlabError, match="same shape"):
        ssim(images[:4], images[:4, :, :16, :16])
    with pytest.raises(GenlabError, match="exceeds"):
        real_reference("digits", n=100000)


def test_save_load_round_trip(tmp_path, fashion):
    images, _, model = fashion
    model.save_pretrained(tmp_path)
    loaded = FeatureClassifier.from_pretrained(tmp_path).eval()
    def public(cfg):
        return {k: v for k, v in cfg.items() if not k.startswith("_")}

    assert public(loaded.config) == public(model.config)
    torch.testing.assert_close(loaded(images[:16]), model(images[:16]), rtol=0, atol=0)
    torch.testing.assert_close(loaded.features(images[:16]), model.features(images[:16]), rtol=0, atol=0)


def test_train_classifier_smoke_is_deterministic(tmp_path):
    a, acc = train_classifier("digits", steps=3, out=str(tmp_path / "a"), log_every=0)
    b, _ = train_classifier("digits", steps=3, out=None, log_every=0)
    assert 0.0 <= acc <= 1.0
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    loaded = FeatureClassifier.from_pretrained(tmp_path / "a")
    assert loaded.config.image_size == 16 and loaded.config.num_classes == 10
