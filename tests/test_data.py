"""Tests for genlab.data: each data set's shapes, ranges, determinism, captions against pixels, errors."""

import gzip
import os
import re
import time
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genlab.data import DATASETS, GenlabDataset, load_dataset
from genlab.errors import GenlabError

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
# What the colour words mean, written here independently of genlab.data.shapes (direction in RGB space).
COLOR_WORDS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0),
               "magenta": (1, 0, 1), "cyan": (0, 1, 1), "white": (1, 1, 1), "orange": (1, 0.5, 0)}


def check_split(ds, n, channels, size):
    """Common contract: attributes, whole-split tensors and one item."""
    assert isinstance(ds, GenlabDataset) and len(ds) == n
    assert (ds.channels, ds.image_size) == (channels, size)
    assert ds.images.shape == (n, channels, size, size) and ds.images.dtype == torch.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.long
    assert 0 <= ds.labels.min() and ds.labels.max() < ds.num_classes == len(ds.class_names)
    item = ds[n - 1]
    assert torch.equal(item["pixel_values"], ds.images[n - 1]) and item["pixel_values"].dtype == torch.float32
    assert item["class_labels"].shape == () and item["class_labels"].dtype == torch.long
    assert item["class_labels"] == ds.labels[n - 1]
    return item


def collate_one_batch(ds, batch_size=4):
    return next(iter(DataLoader(ds, batch_size=batch_size, shuffle=False)))


# ---------------------------------------------------------------- fashion

def write_idx(path, array, magic_type=8):
    header = bytes([0, 0, magic_type, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


def test_fashion_full_splits_and_label_histogram():
    from genlab.data import fashion

    fashion._read_idx.cache_clear()
    start = time.perf_counter()
    train = load_dataset("fashion")
    elapsed = time.perf_counter() - start
    # The spec asks for < 2 s (measured ~0.6 s); the bound is loose because the test machine is shared.
    assert elapsed < 6, f"loading Fashion-MNIST train took {elapsed:.1f}s"
    check_split(train, 60000, 1, 32)
    assert train.class_names == FASHION_NAMES
    assert torch.equal(torch.bincount(train.labels, minlength=10), torch.full((10,), 6000))
    test = load_dataset("fashion", split="test")
    check_split(test, 10000, 1, 32)
    assert torch.equal(torch.bincount(test.labels, minlength=10), torch.full((10,), 1000))
    # 28 px padded to 32 with background: the 2 px frame is black (-1), the inside is the native image.
    native = load_dataset("fashion", split="test", image_size=28).images
    assert native.shape == (10000, 1, 28, 28)
    assert torch.equal(test.images[:, :, 2:30, 2:30], native)
    frame = test.images.clone()
    frame[:, :, 2:30, 2:30] = -1
    assert (frame == -1).all() and native.std() > 0.3
    small = load_dataset("fashion", split="test", image_size=16)
    assert small.images.shape == (10000, 1, 16, 16)
    # A resize keeps the picture: the downsampled mean brightness per image tracks the original's.
    assert torch.allclose(small.images.mean((1, 2, 3)), test.images.mean((1, 2, 3)), atol=0.02)


def test_fashion_reads_plain_and_gz_idx_files_from_root(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28))
    labels = rng.integers(0, 10, 7)
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), images)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), labels)
    ds = load_dataset("fashion", split="test", root=str(tmp_path), image_size=28)
    check_split(ds, 7, 1, 28)
    assert torch.equal(ds.labels, torch.from_numpy(labels))
    assert torch.allclose(ds.images[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    with pytest.raises(GenlabError, match="train-images-idx3-ubyte"):  # train files are not there
        load_dataset("fashion", root=str(tmp_path))


def test_fashion_missing_and_corrupt_files(tmp_path, monkeypatch):
    with pytest.raises(GenlabError, match="apt-get install dataset-fashion-mnist") as e:
        load_dataset("fashion", root=str(tmp_path))
    assert "train-images-idx3-ubyte" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GenlabError, match="apt-get"):
        load_dataset("fashion", root=str(tmp_path / "nowhere"))
    monkeypatch.setenv("GENLAB_FASHION_ROOT", str(tmp_path))  # the env var replaces the default root
    with pytest.raises(GenlabError, match=re.escape(str(tmp_path))):
        load_dataset("fashion", split="test")
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), np.zeros(3))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78garbage")
    with pytest.raises(GenlabError, match="magic"):
        load_dataset("fashion", split="test")
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), np.zeros((3, 28, 28)))
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-100])  # truncated copy
    with pytest.raises(GenlabError, match="corrupt"):
        load_dataset("fashion", split="test")
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(GenlabError, match="cannot read"):
        load_dataset("fashion", split="test")


# ---------------------------------------------------------------- digits

def as_counter(images):
    return Counter(bytes(img.numpy().tobytes()) for img in images)


def test_digits_split_is_a_stratified_partition():
    from sklearn.datasets import load_digits

    train, test, full = (load_dataset("digits", split=s) for s in ("train", "test", "all"))
    check_split(full, 1797, 1, 16)
    check_split(train, len(train), 1, 16)
    check_split(test, len(test), 1, 16)
    assert len(train) + len(test) == 1797 and 0.15 < len(test) / 1797 < 0.25
    # Train and test together are exactly "all" (as multisets of images), so there is no overlap and no loss.
    assert as_counter(train.images) + as_counter(test.images) == as_counter(full.images)
    # Per class about 20 % goes to test.
    per_class_all = torch.bincount(full.labels, minlength=10).float()
    per_class_test = torch.bincount(test.labels, minlength=10).float()
    assert ((per_class_test / per_class_all - 0.2).abs() < 0.02).all()
    assert full.class_names == [str(d) for d in range(10)]
    # At 8 px the pixels are sklearn's 0..16 values mapped linearly to [-1, 1].
    raw = load_digits()
    native = load_dataset("digits", split="all", image_size=8)
    assert torch.allclose(native.images[:, 0], torch.from_numpy(raw.images).float() / 8 - 1)
    assert torch.equal(native.labels, torch.from_numpy(raw.target).long())


def test_digits_determinism_and_sizes():
    a, b = load_dataset("digits", split="test", seed=3), load_dataset("digits", split="test", seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = load_dataset("digits", split="test", seed=4)
    assert as_counter(a.images) != as_counter(c.images)
    big = load_dataset("digits", split="test", seed=3, image_size=32)
    assert big.images.shape == (len(a), 1, 32, 32) and torch.equal(big.labels, a.labels)
    assert big.images.min() >= -1 and big.images.max() <= 1
    odd = load_dataset("digits", split="all", image_size=5)
    assert odd.images.shape == (1797, 1, 5, 5)
    half = load_dataset("digits", split="test", test_fraction=0.5)
    assert abs(len(half) - 1797 / 2) < 10


# ---------------------------------------------------------------- shapes

CAPTION = re.compile(r"^a (small|large) (\w+) (\w+) (?:at|on|in) the (.+)$")


def mass_centroid(img):
    """Brightness-weighted centroid (x, y) in pixels of a (C, H, W) [-1, 1] image, and total brightness."""
    m = ((img + 1) / 2).amax(0)
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]) + 0.5, torch.arange(m.shape[1]) + 0.5, indexing="ij")
    return (m * xs).sum() / m.sum(), (m * ys).sum() / m.sum(), m.sum()


def dominant_color(img):
    """Name in COLOR_WORDS closest to the brightness-normalised mean colour of the non-black pixels."""
    x = (img + 1) / 2
    peak = x.amax(0)
    mask = peak > 0.05
    direction = (x[:, mask] / peak[mask]).mul(peak[mask]).sum(1) / peak[mask].sum()  # weighted by brightness
    return min(COLOR_WORDS, key=lambda k: torch.dist(direction, torch.tensor(COLOR_WORDS[k]).float()))


def test_shapes_contract_defaults_and_determinism():
    train = load_dataset("shapes")
    check_split(train, 10000, 3, 32)
    assert len(load_dataset("shapes", split="test")) == 2000
    assert train.num_classes >= 4 and len(set(train.class_names)) == train.num_classes
    assert torch.bincount(train.labels, minlength=train.num_classes).min() > 0
    assert len(train.captions) == 10000 and isinstance(train[0]["caption"], str)
    assert len({c.split()[2] for c in train.captions}) >= 6  # at least six colour words
    a = load_dataset("shapes", num_samples=50, seed=1)
    b = load_dataset("shapes", num_samples=50, seed=1)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, load_dataset("shapes", num_samples=50, seed=2).images)
    assert not torch.equal(a.images, load_dataset("shapes", split="test", num_samples=50, seed=1).images)
    small = load_dataset("shapes", num_samples=5, image_size=16)
    check_split(small, 5, 3, 16)


def test_shapes_captions_match_pixels():
    ds = load_dataset("shapes", split="test", num_samples=300, seed=5)
    areas = {}
    for i in range(len(ds)):
        img, caption = ds.images[i], ds.captions[i]
        size, color, shape, where = CAPTION.match(caption).groups()
        assert shape == ds.class_names[ds.labels[i]]
        assert dominant_color(img) == color, caption
        cx, cy, area = mass_centroid(img)
        row = 0 if "top" in where else 2 if "bottom" in where else 1
        col = 0 if "left" in where else 2 if "right" in where else 1
        third = ds.image_size / 3
        assert (int(cx // third), int(cy // third)) == (col, row), (caption, cx, cy)
        areas.setdefault((shape, size), []).append(area.item())
        assert ds.attributes[i]["shape"] == shape and ds.attributes[i]["color"] == color
    for shape in ds.class_names:  # a large shape always covers more pixels than a small one of the same kind
        assert min(areas[(shape, "large")]) > max(areas[(shape, "small")])


def test_shapes_video_moves_in_captioned_direction():
    ds = load_dataset("shapes", video=True, num_samples=120)
    t = 8
    item = check_split(ds, 120, 3, 32)
    assert ds.videos.shape == (120, t, 3, 32, 32) and item["video"].shape == (t, 3, 32, 32)
    assert torch.equal(ds.videos[:, 0], ds.images) and torch.equal(item["video"], ds.videos[-1])
    assert ds.videos.min() >= -1 and ds.videos.max() <= 1
    signs = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    for i in range(len(ds)):
        video, caption = ds.videos[i], ds.captions[i]
        direction = caption.split(" moving ")[1]
        assert caption.split()[3] == ds.class_names[ds.labels[i]]
        assert ((video[1:] - video[:-1]).abs().flatten(1).amax(1) > 0).all()  # every frame differs
        want = [sum(signs[w][k] for w in direction.split("-")) for k in (0, 1)]
        (x0, y0, _), (x1, y1, _) = mass_centroid(video[0]), mass_centroid(video[-1])
        for moved, sign in ((x1 - x0, want[0]), (y1 - y0, want[1])):
            assert (moved * sign > 2) if sign else (abs(moved) < 1), (caption, moved)
    clips = load_dataset("shapes", video=True, num_frames=3, num_samples=4, seed=9)
    assert clips.videos.shape == (4, 3, 3, 32, 32)


def test_shapes_long_clips_bounce_and_stay_in_frame():
    ds = load_dataset("shapes", video=True, num_frames=40, num_samples=12, seed=2)
    for video in ds.videos:
        areas = torch.stack([mass_centroid(f)[2] for f in video])
        # The object never leaves the image: its visible area only changes by antialiasing.
        assert (areas / areas[0] - 1).abs().max() < 0.15
        border = torch.cat([video[..., 0, :], video[..., -1, :], video[..., 0], video[..., -1]], -1)
        assert border.max() < 0


# ---------------------------------------------------------------- imagefolder

def save_png(path, color, size=(6, 6)):
    Image.new("RGB", size, color).save(path)


def test_imagefolder_classes_captions_and_crop(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    save_png(tmp_path / "cats" / "a.png", (255, 0, 0))
    save_png(tmp_path / "cats" / "b.png", (250, 0, 0))
    (tmp_path / "cats" / "a.txt").write_text("a red\ncat  ")
    # A wide image: centre crop keeps only the green middle. (Saved as PNG: JPEG would blur the colours.)
    wide = Image.new("RGB", (16, 8), (0, 0, 255))
    wide.paste((0, 255, 0), (4, 0, 12, 8))
    wide.save(tmp_path / "dogs" / "c.png")
    save_png(tmp_path / "dogs" / "d.jpg", (0, 0, 0))
    (tmp_path / "dogs" / ".DS_Store").write_bytes(b"\x00junk")  # hidden files are ignored
    ds = load_dataset("imagefolder", root=str(tmp_path), image_size=4)
    check_split(ds, 4, 3, 4)
    assert ds.class_names == ["cats", "dogs"] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.captions == ["a red cat", "", "", ""]
    assert torch.allclose(ds.images[0], torch.tensor([1.0, -1, -1]).view(3, 1, 1))
    green = (ds.images[2] + 1) / 2
    assert green[1].min() > 0.95 and green[[0, 2]].max() < 0.05
    batch = collate_one_batch(ds)
    assert batch["pixel_values"].shape == (4, 3, 4, 4) and batch["caption"] == ["a red cat", "", "", ""]
    gray = load_dataset("imagefolder", root=str(tmp_path), image_size=4, channels=1)
    check_split(gray, 4, 1, 4)
    assert torch.allclose(gray.images[3], torch.tensor(-1.0))  # the black jpg
    split = [load_dataset("imagefolder", root=str(tmp_path), split=s, test_fraction=0.5)
             for s in ("train", "test")]
    assert [len(s) for s in split] == [2, 2]  # one image of each class held out
    assert sorted(split[1].labels.tolist()) == [0, 1]


def test_imagefolder_flat_folder_is_one_class(tmp_path):
    folder = tmp_path / "my_pics"
    folder.mkdir()
    for i in range(3):
        save_png(folder / f"{i}.png", (i * 100, 0, 0), size=(9, 5))
    ds = load_dataset("imagefolder", root=str(folder))
    check_split(ds, 3, 3, 32)
    assert ds.class_names == ["my_pics"] and ds.captions is None and "caption" not in ds[0]
    assert collate_one_batch(ds)["pixel_values"].shape == (3, 3, 32, 32)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(GenlabError, match="no such folder"):
        load_dataset("imagefolder", root=str(tmp_path / "missing"))
    with pytest.raises(GenlabError, match="root"):
        load_dataset("imagefolder")
    with pytest.raises(GenlabError, match="no images"):
        load_dataset("imagefolder", root=str(tmp_path))
    save_png(tmp_path / "ok.png", (1, 2, 3))
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(GenlabError, match="notes.md"):
        load_dataset("imagefolder", root=str(tmp_path))
    os.remove(tmp_path / "notes.md")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(GenlabError, match="broken.png") as e:
        load_dataset("imagefolder", root=str(tmp_path))
    assert "\n" not in str(e.value)
    with pytest.raises(GenlabError, match="channels"):
        load_dataset("imagefolder", root=str(tmp_path), channels=2)


# ---------------------------------------------------------------- shared API

def test_bad_arguments_give_one_line_errors():
    with pytest.raises(GenlabError) as e:
        load_dataset("cifar")
    assert all(name in str(e.value) for name in DATASETS)
    with pytest.raises(GenlabError, match="split"):
        load_dataset("digits", split="validation")
    with pytest.raises(GenlabError, match="split"):
        load_dataset("shapes", split="all")
    for bad in (0, -4, 2.5):
        with pytest.raises(GenlabError, match="image_size"):
            load_dataset("digits", image_size=bad)
    with pytest.raises(GenlabError, match="num_sample"):
        load_dataset("shapes", num_sample=10)
    with pytest.raises(GenlabError, match="'video'"):
        load_dataset("digits", video=True)
    with pytest.raises(GenlabError, match="num_samples"):
        load_dataset("shapes", num_samples=0)
    with pytest.raises(GenlabError, match="num_frames"):
        load_dataset("shapes", num_frames=4)
    with pytest.raises(GenlabError, match="root"):
        load_dataset("digits", root="/tmp")
    with pytest.raises(GenlabError, match="seed"):
        load_dataset("digits", seed=-1)
    with pytest.raises(GenlabError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)
    with pytest.raises(GenlabError, match="empty"):
        load_dataset("digits", split="test", test_fraction=0.0)


def test_items_are_copies_and_index_errors():
    ds = load_dataset("digits", split="test")
    before = ds.images[0].clone()
    ds[0]["pixel_values"].fill_(0.5)
    assert torch.equal(ds.images[0], before)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_default_collate_batches_every_builtin_dataset():
    batches = {
        "fashion": collate_one_batch(load_dataset("fashion", split="test")),
        "digits": collate_one_batch(load_dataset("digits")),
        "shapes": collate_one_batch(load_dataset("shapes", num_samples=8)),
        "video": collate_one_batch(load_dataset("shapes", video=True, num_samples=8, num_frames=5)),
    }
    assert batches["fashion"]["pixel_values"].shape == (4, 1, 32, 32)
    assert batches["digits"]["pixel_values"].shape == (4, 1, 16, 16)
    assert batches["shapes"]["pixel_values"].shape == (4, 3, 32, 32)
    assert isinstance(batches["shapes"]["caption"], list) and len(batches["shapes"]["caption"]) == 4
    assert batches["video"]["video"].shape == (4, 5, 3, 32, 32)
    assert torch.equal(batches["video"]["video"][:, 0], batches["video"]["pixel_values"])
    for batch in batches.values():
        assert batch["class_labels"].shape == (4,) and batch["class_labels"].dtype == torch.long
