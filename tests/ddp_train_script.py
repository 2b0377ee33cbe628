"""Toy model, data and objective for tests/test_training.py, and the script its multi-process test launches:

    accelerate launch --cpu --num_processes 2 ... tests/ddp_train_script.py OUTDIR

trains a few steps with real DDP (gloo), resumes, is stopped by a SIGTERM sent to one rank only, and writes
OUTDIR/rank-<i>.json with what each process saw.
"""

import json
import os
import signal
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


class TinyNet(nn.Module):
    """A 2-layer MLP denoiser on 1x8x8 images; dropout makes the global RNG matter."""

    def __init__(self, hidden=32, dropout=0.1, seed=0):
        super().__init__()
        with torch.random.fork_rng():  # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, 64))

    def forward(self, x):
        return self.net(x).view_as(x)


class DictDataset(Dataset):
    """Seeded random 1x8x8 images in [-1, 1] with class labels and captions, as dict items."""

    def __init__(self, n=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
        self.labels = torch.randint(0, 4, (n,), generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"pixel_values": self.images[i], "class_labels": self.labels[i], "caption": f"item {i}"}


class DenoiseObjective(nn.Module):
    """Predict the clean image from a noisy one; noise from the trainer's generator. Holds a frozen part
    (a fixed linear 'encoder') to check that the trainer never optimises the objective."""

    def __init__(self, sigma=0.5):
        super().__init__()
        self.sigma = sigma
        self.frozen = nn.Linear(1, 1)
        nn.init.constant_(self.frozen.weight, 0.9)
        nn.init.constant_(self.frozen.bias, 0.05)
        self.calls = 0

    def forward(self, model, batch, generator):
        self.calls += 1
        x = batch["pixel_values"]
        assert isinstance(batch["caption"], list)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        x = self.frozen(x.unsqueeze(-1)).squeeze(-1)
        pred = model(x + self.sigma * noise)
        loss = F.mse_loss(pred, x)
        return {"loss": loss, "noise_std": noise.std()}


class SignalAt(DenoiseObjective):
    """Sends SIGTERM to this process when called for the `at`-th time, on rank `rank` only."""

    def __init__(self, at, rank):
        super().__init__()
        self.at, self.rank = at, rank

    def forward(self, model, batch, generator):
        if self.calls + 1 == self.at and int(os.environ.get("RANK", "0")) == self.rank:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(model, batch, generator)


def main(outdir):
    from genlab.training import TrainConfig, Trainer

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()

    # Phase 0: one step with no randomness (no noise, no dropout), so a 1-process run on the two ranks' batches
    # concatenated must see the same gradient: DDP averages, it does not sum. The logged grad_norm is pre-clipping.
    avg_dir = os.path.join(outdir, "average")
    config = TrainConfig(steps=1, batch_size=4, lr=1e-2, grad_clip=1e9, log_every=1, checkpoint_every=1)
    trainer = Trainer(TinyNet(dropout=0.0), DenoiseObjective(sigma=0.0), DictDataset(), config, avg_dir)
    trainer.train()
    average = {"params": flat(trainer.unwrapped_model())}

    # Phase 1: 4 steps, checkpoint at step 4.
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, checkpoint_every=4, log_every=1, ema_decay=0.9)
    trainer = Trainer(TinyNet(), DenoiseObjective(), DictDataset(), config, outdir)
    summary = trainer.train()
    acc = trainer.accelerator
    info = {"average": average, "rank": acc.process_index, "world_size": acc.num_processes, "step": summary["step"],
            "losses": summary["losses"], "params": flat(trainer.unwrapped_model()), "pid": os.getpid()}

    # Phase 2: resume towards 8 steps from another init; only rank 1 gets SIGTERM, during step 6. The ranks
    # must agree to stop after step 6 and write its checkpoint together.
    config = TrainConfig(steps=8, batch_size=4, lr=1e-2, checkpoint_every=4, log_every=1, ema_decay=0.9)
    trainer = Trainer(TinyNet(seed=5), SignalAt(at=2, rank=1), DictDataset(), config, outdir)
    try:
        trainer.train()
        info["stopped"] = False
    except KeyboardInterrupt:
        info["stopped"] = True
    info["stop_step"] = trainer.ema.optimization_step
    info["stop_params"] = flat(trainer.unwrapped_model())
    with open(os.path.join(outdir, f"rank-{acc.process_index}.json"), "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main(sys.argv[1])
