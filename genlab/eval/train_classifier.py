"""Train the feature classifier that genlab ships for a data set.

    python -m genlab.eval.train_classifier {digits,fashion,shapes} [--steps N] [--out DIR] [--seed S]

Trains on the train split with light augmentation (random shifts of up to 2 px and a little Gaussian noise, so
slightly imperfect generated images are still scored sensibly), AdamW with warm-up and cosine decay, everything
seeded; prints the test accuracy and saves with `save_pretrained` to DIR (default genlab/eval/nets/NAME).
Sized to finish in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from ..errors import GenlabError, check_positive_int
from .classifier import NETS_DIR, FeatureClassifier

# Per data set: net shape and training length. Widths stay small so every net is well under 2 MB.
RECIPES = {
    "digits": {"widths": (32, 64, 128), "feature_dim": 128, "steps": 600, "batch_size": 128, "lr": 3e-3},
    "fashion": {"widths": (32, 64, 128), "feature_dim": 128, "steps": 2500, "batch_size": 128, "lr": 3e-3},
    "shapes": {"widths": (32, 64, 128), "feature_dim": 128, "steps": 250, "batch_size": 128, "lr": 3e-3},
}
MAX_SHIFT = 2
MAX_NOISE = 0.1  # std of the added noise is drawn per image from U(0, MAX_NOISE), in [-1, 1] units


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to MAX_SHIFT px (edge pixels replicated) and add a little Gaussian noise."""
    b, _, h, w = x.shape
    padded = F.pad(x, (MAX_SHIFT,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * MAX_SHIFT + 1, (2, b), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    shifted = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    std = torch.rand(b, 1, 1, 1, generator=generator) * MAX_NOISE
    return shifted + std * torch.randn(shifted.shape, generator=generator)


@torch.no_grad()
def accuracy(
    model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> float:
    """Test accuracy of ``model`` in eval mode."""
    model.eval()
    correct = sum(
        (model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum().item()
        for i in range(0, len(images), batch_size)
    )
    return correct / len(images)


def train_classifier(
    name: str, steps: int | None = None, out: str | None = None, seed: int = 0, log_every: int = 100
) -> tuple[FeatureClassifier, float]:
    """Train the classifier for data set ``name``, save it to ``out`` (if not None) and return (model, test accuracy)."""
    from ..data import load_dataset

    if name not in RECIPES:
        raise GenlabError(f"no classifier recipe for {name!r}; choose from {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    steps = check_positive_int(recipe["steps"] if steps is None else steps, "steps")
    train = load_dataset(name, split="train", seed=seed)
    test = load_dataset(name, split="test", seed=seed)
    torch.manual_seed(seed)  # weight init; batches and augmentation use their own generator below
    model = FeatureClassifier(
        in_channels=train.channels,
        image_size=train.image_size,
        num_classes=train.num_classes,
        feature_dim=recipe["feature_dim"],
        widths=recipe["widths"],
    )
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=5e-4)
    warmup = max(1, steps // 20)
    # Linear warm-up, then cosine decay to zero: converges in the short CPU budget without tuning.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(seed)
    images, labels, bs = train.images, train.labels, recipe["batch_size"]
    order, pos = torch.randperm(len(images), generator=gen), 0
    model.train()
    start = time.time()
    for step in range(1, steps + 1):
        if pos + bs > len(order):  # new epoch: reshuffle, drop the ragged tail
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        loss = F.cross_entropy(model(augment(images[idx], gen)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps):
            print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - start:.0f}s)", flush=True)
    acc = accuracy(model, test.images, test.labels)
    model.requires_grad_(False)
    if out is not None:
        model.save_pretrained(out)
    return model, acc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train a genlab evaluation classifier.")
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--out", default=None, help="output folder (default: genlab/eval/nets/NAME)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out or os.path.join(NETS_DIR, args.name)
    start = time.time()
    try:
        _, acc = train_classifier(args.name, steps=args.steps, out=out, seed=args.seed)
    except GenlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.name}: test accuracy {acc:.4f} ({time.time() - start:.0f}s), saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
