"""The one training loop every genlab model uses. Accelerate handles devices, mixed precision and DDP.

Exact resume. Everything random at optimizer step k derives from (seed, k, rank):
  - the objective's `generator` (a CPU torch.Generator, so noise does not depend on the device) and the global
    torch / numpy / random RNGs (dropout, augmentation) are reseeded at the start of every step;
  - the data order is a permutation seeded per epoch, sharded across processes and indexed by the micro-step,
    so the batches of step k do not depend on what ran before.
A run resumed from the checkpoint of step N is therefore bit-identical (fp32, same device and number of
processes) to an uninterrupted run of the same length.

Stopping. The first SIGINT (Ctrl-C) or SIGTERM asks the loop to stop after the current step: all processes agree
on it through the per-step loss reduction, write a checkpoint of that step and raise KeyboardInterrupt. A second
signal quits at once. SIGKILL loses the work since the last periodic checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import random
import shutil
import signal
import threading

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import parse_flag_from_env, send_to_device
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ..errors import GenlabError, first_line
from .checkpoint import list_checkpoints, load_checkpoint, remove_partial, save_checkpoint
from .config import TrainConfig

logger = get_logger(__name__)

# EMA warm-up (crowsonkb): decay = 1 - (1 + step / inv_gamma) ** -power. power 3/4 suits runs of thousands to
# ~100k steps (0.97 at step 100, 0.994 at 1k, 0.999 at 10k); power 2/3 (diffusers' default) is for ~1M steps.
EMA_INV_GAMMA = 1.0
EMA_POWER = 3 / 4

# Config keys that do not change the numbers a run produces (changing them between resumes is fine).
_HARMLESS_KEYS = {"steps", "checkpoint_every", "keep_checkpoints", "sample_every", "log_every", "num_workers"}


def fingerprint(*modules: nn.Module | None) -> str:
    """sha256 of the modules' parameters and buffers (names, shapes, bytes): the starting point a run was built
    from (the model, and the frozen tokenizer its data go through)."""
    h = hashlib.sha256()
    for i, module in enumerate(m for m in modules if m is not None):
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{i}.{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def derive_seed(*ints: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints; numpy's SeedSequence hashes it, so nearby tuples
    (seed, step, rank) give unrelated streams."""
    return int(np.random.SeedSequence(list(ints)).generate_state(1, np.uint64)[0]) >> 1


class ShardedBatchSampler(Sampler):
    """Index lists for micro-steps [start, stop).

    Epoch e is a permutation of the dataset seeded by (seed, e); micro-step m takes the next
    `batch_size * world_size` indices of its epoch and this rank takes its slice. The tail that fills no global
    batch is skipped (it differs every epoch), so every rank always gets full batches of equal size.
    """

    def __init__(self, num_items, batch_size, rank, world_size, seed, start, stop):
        self.num_items, self.batch_size, self.rank, self.world_size = num_items, batch_size, rank, world_size
        self.seed, self.start, self.stop = seed, start, stop
        self.per_epoch = num_items // (batch_size * world_size)

    def __len__(self):
        return max(0, self.stop - self.start)

    def __iter__(self):
        epoch, perm = None, None
        for m in range(self.start, self.stop):
            e, i = divmod(m, self.per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(derive_seed(self.seed, 1, e))
                epoch, perm = e, torch.randperm(self.num_items, generator=g)
            lo = (i * self.world_size + self.rank) * self.batch_size
            yield perm[lo : lo + self.batch_size].tolist()


class _ModelWithObjective(nn.Module):
    """Model and objective as one module, so that accelerator.prepare() moves both to the device, autocasts the
    whole loss computation and wraps both in DDP: whichever model methods the objective calls, they run inside
    DDP's forward and their gradients are all-reduced."""

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model = model
        self.objective = objective  # registered as a submodule when it is an nn.Module, so it moves with us

    def train(self, mode: bool = True):
        super().train(mode)
        if isinstance(self.objective, nn.Module):
            self.objective.eval()  # frozen parts (a tokenizer) always run in inference mode
        self.model.train(mode)
        return self

    def forward(self, batch, generator, step: int | None = None):
        if step is not None and self._takes_step:  # objectives whose schedule depends on the step (Hi-MAR)
            return self.objective(self.model, batch, generator, step=step)
        return self.objective(self.model, batch, generator)

    @property
    def _takes_step(self) -> bool:
        import inspect

        target = self.objective.forward if isinstance(self.objective, nn.Module) else self.objective
        try:
            return "step" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            return False


class _StopOnSignal:
    """First SIGINT/SIGTERM sets `requested` (the loop stops after the step); a second one raises at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers only work there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
              "(send it again to quit now)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _make_accelerator(mixed_precision: str) -> Accelerator:
    # Decided before any Accelerator exists: its state is per process and could not be changed afterwards.
    # (No PartialState() here either: it would ignore ACCELERATE_USE_CPU, which multi-process CPU runs need.)
    device_api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU, ...
    has_gpu = device_api.is_available() if device_api is not None else torch.cuda.is_available()
    if mixed_precision == "fp16" and (parse_flag_from_env("ACCELERATE_USE_CPU") or not has_gpu):
        raise GenlabError("mixed_precision='fp16' needs a GPU; on CPU use 'bf16' or 'no'")
    try:
        return Accelerator(mixed_precision=mixed_precision)
    except ValueError as e:  # AcceleratorState is per process: a later Accelerator cannot change the precision
        raise GenlabError(f"cannot train with mixed_precision={mixed_precision!r}: {first_line(e)}") from None


class Trainer:
    """Trains `model` with `objective` on `dataset`; checkpoints, logs and samples into `output_dir`.

    Args:
        model: the nn.Module to optimise (a GenlabModel in genlab). All its parameters with requires_grad are
            trained with AdamW; EMA tracks all its parameters.
        objective: `objective(model, batch, generator) -> dict` with a scalar tensor `loss`; other scalar entries
            are logged (averaged over micro-batches and processes), as is `grad_norm` when clipping is on. `generator` is a CPU torch.Generator seeded from (seed, step, rank): draw all noise from it.
            An nn.Module objective is moved to the device and kept frozen (its own parameters are never optimised).
        dataset: a torch Dataset of dicts of tensors (str captions become lists); collated with default_collate.
        config: a TrainConfig.
        output_dir: receives checkpoints/, train_log.jsonl and samples/.
        sample_fn: optional `sample_fn(ema_model, step) -> PIL.Image`, called every `config.sample_every` steps
            on the main process; saved as samples/step-XXXXXX.png.
        accelerator: an Accelerator to use (e.g. with DDP kwargs); by default one is made from the config.
        start_fingerprint: `fingerprint(model)` of a deterministically built model (a recipe's seeded
            construction, its init: folder and tokenizer): written into every checkpoint, and a resume from a
            checkpoint of another starting point is refused (it would silently continue the old run).
    """

    def __init__(self, model, objective, dataset, config: TrainConfig, output_dir, sample_fn=None, accelerator=None,
                 start_fingerprint: str | None = None):
        if not isinstance(config, TrainConfig):
            raise GenlabError(f"config must be a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, nn.Module):
            raise GenlabError(f"model must be a torch nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise GenlabError("objective must be callable as objective(model, batch, generator)")
        self.config, self.output_dir, self.sample_fn = config, str(output_dir), sample_fn
        self.accelerator = acc = accelerator or _make_accelerator(config.mixed_precision)
        if acc.gradient_accumulation_steps != 1:
            raise GenlabError("set TrainConfig.grad_accum instead of the Accelerator's gradient_accumulation_steps")
        if acc.mixed_precision != config.mixed_precision:
            raise GenlabError(f"the accelerator uses mixed_precision={acc.mixed_precision!r} but the config says "
                              f"{config.mixed_precision!r}")
        if len(dataset) < config.batch_size * acc.num_processes:
            raise GenlabError(f"dataset has {len(dataset)} items, fewer than one global batch "
                              f"({config.batch_size} x {acc.num_processes} processes)")
        self.model, self.dataset = model, dataset
        self.start_fingerprint = start_fingerprint
        if isinstance(objective, nn.Module):
            own = {id(p) for p in model.parameters()}
            for p in objective.parameters():
                if id(p) not in own:
                    p.requires_grad_(False)

        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise GenlabError(f"{type(model).__name__} has no parameters with requires_grad=True to train")
        optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        # Not passed through prepare(): Accelerate's scheduler wrapper steps once per process, while our
        # schedules count optimizer steps.
        self.scheduler = get_scheduler("cosine" if config.lr_schedule == "cosine" else "constant_with_warmup",
                                       optimizer, num_warmup_steps=config.warmup_steps,
                                       num_training_steps=config.steps)
        self._wrapped, self.optimizer = acc.prepare(_ModelWithObjective(model, objective), optimizer)
        # With warm-up off, min_decay = decay makes the decay constant (EMAModel otherwise ramps (1+k)/(10+k)).
        decay = float(config.ema_decay)
        self.ema = EMAModel(model.parameters(), decay=decay, min_decay=0.0 if config.ema_warmup else decay,
                            use_ema_warmup=config.ema_warmup, inv_gamma=EMA_INV_GAMMA, power=EMA_POWER)
        self._updating = False  # True while parameters are half-updated (no checkpoint possible then)

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.output_dir, "checkpoints")

    @property
    def log_path(self) -> str:
        return os.path.join(self.output_dir, "train_log.jsonl")

    def unwrapped_model(self) -> nn.Module:
        """The live model being trained (no DDP wrapper)."""
        return self.model

    def ema_model(self) -> nn.Module:
        """A copy of the model holding the EMA weights, in eval mode: what pipelines ship."""
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model.parameters())
        return model.eval()

    def train(self, resume: bool = True) -> dict:
        """Train up to `config.steps` optimizer steps and return {step, loss, losses, start_step}.

        `losses` holds the loss (mean over processes) of every step of this call; every `log_every` steps and at
        the end a JSON line {step, loss, lr, ...} is appended to output_dir/train_log.jsonl.

        With `resume=True` training continues from the newest complete checkpoint in output_dir/checkpoints/
        (half-written `.tmp` folders are removed). `resume=False` deletes earlier checkpoints and the log in
        output_dir and starts at step 0 from the model's current weights.
        """
        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:
            os.makedirs(self.output_dir, exist_ok=True)
            if resume:
                for path in remove_partial(self.checkpoint_dir):
                    acc.print(f"removed incomplete checkpoint {path}")
            elif os.path.isdir(self.checkpoint_dir) or os.path.exists(self.log_path):
                logger.warning(f"resume=False: deleting earlier checkpoints and log in {self.output_dir}")
                shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.log_path)
        acc.wait_for_everyone()

        start = 0
        checkpoints = list_checkpoints(self.checkpoint_dir) if resume else []
        if checkpoints:  # every process loads, before any of them trains on
            state = load_checkpoint(checkpoints[-1], self.model, self.ema, self.optimizer, self.scheduler)
            saved = state.get("start_fingerprint")
            if None not in (saved, self.start_fingerprint) and saved != self.start_fingerprint:
                raise GenlabError(f"{checkpoints[-1]} belongs to a run that started from other weights than this "
                                  "one (the recipe's init: folder, tokenizer or model changed since it began): delete "
                                  f"{self.output_dir} to start over, or train into another run folder (--run-dir)")
            start = int(state["step"])
            self._warn_changes(state)
            acc.print(f"resuming from {checkpoints[-1]}")
        if acc.is_main_process:
            self._truncate_log(start)  # drop lines of a crashed run past the checkpoint, they are redone
        acc.wait_for_everyone()

        ga = cfg.grad_accum
        sampler = ShardedBatchSampler(len(self.dataset), cfg.batch_size, acc.process_index, acc.num_processes,
                                      cfg.seed, start * ga, cfg.steps * ga)
        batches = iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers))
        self._wrapped.train()
        losses, done, last_saved = [], start, start
        self._updating = False
        bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=not acc.is_local_main_process)
        try:
            with _StopOnSignal() as stop:
                for step in range(start + 1, cfg.steps + 1):
                    metrics, lr = self._train_step(step, batches)
                    done = step
                    # One all-reduce per step: metrics averaged over processes, plus "does any process want to stop".
                    keys = sorted(metrics)
                    flag = torch.tensor(float(stop.requested), device=acc.device)
                    values = acc.reduce(torch.stack([metrics[k] for k in keys] + [flag]), "mean").tolist()
                    metrics, stop_now = dict(zip(keys, values[:-1])), values[-1] > 0
                    losses.append(metrics["loss"])
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                    if acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
                        self._log({"step": step, "loss": metrics.pop("loss"), "lr": lr, **metrics})
                    if cfg.sample_every and step % cfg.sample_every == 0 and self.sample_fn is not None:
                        self._sample(step)
                    if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps or stop_now:
                        self.save_checkpoint(step)
                        last_saved = step
                    if stop_now:
                        raise KeyboardInterrupt(f"training stopped at step {step}; checkpoint saved")
        except KeyboardInterrupt:
            # Raised by user code or a second signal: unless it hit mid-update the model is at step `done`.
            # With several processes the others may be elsewhere, so saving (collective) is left to the signal path.
            if done > last_saved and not self._updating and acc.num_processes == 1:
                self.save_checkpoint(done)
            raise
        finally:
            bar.close()
        return {"step": done, "loss": losses[-1] if losses else None, "losses": losses, "start_step": start}

    def _train_step(self, step: int, batches) -> tuple[dict, float]:
        cfg, acc = self.config, self.accelerator
        seed = derive_seed(cfg.seed, 0, step, acc.process_index)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        totals = {}
        for micro in range(cfg.grad_accum):
            batch = send_to_device(next(batches), acc.device)
            last = micro == cfg.grad_accum - 1
            # Gradients are all-reduced across processes only on the last micro-batch of the step.
            with contextlib.nullcontext() if last else acc.no_sync(self._wrapped):
                out = self._wrapped(batch, generator, step)
                if not (isinstance(out, dict) and torch.is_tensor(out.get("loss")) and out["loss"].ndim == 0):
                    raise GenlabError("the objective must return a dict with a scalar tensor 'loss'")
                acc.backward(out["loss"] / cfg.grad_accum)
            for k, v in out.items():
                if torch.is_tensor(v) and v.ndim == 0 or isinstance(v, (int, float)):
                    v = torch.as_tensor(v, dtype=torch.float32, device=acc.device)
                    totals[k] = totals.get(k, 0.0) + v.detach().float() / cfg.grad_accum
        # A non-finite loss on any process makes the (all-reduced) gradients non-finite on every process, so every
        # process stops here together, before the update: the parameters and the last checkpoint stay intact.
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not bool(torch.isfinite(totals["loss"])) or (grads and not bool(torch.isfinite(
                torch.stack([g.detach().float().sum() for g in grads]).sum()))):
            raise GenlabError(f"the training loss became {float(totals['loss']):.4g} at step {step} (non-finite loss "
                              "or gradients): stopped before the update, no checkpoint written; lower train.lr, "
                              "enable train.grad_clip or check the data")
        if cfg.grad_clip:  # the norm before clipping is logged: it shows when clipping is active
            totals["grad_norm"] = acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip).detach().float()
        lr = self.scheduler.get_last_lr()[0]
        self._updating = True
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.model.parameters())
        self._updating = False
        return totals, lr

    def save_checkpoint(self, step: int) -> str:
        """Write the checkpoint of `step` (main process only; every process must call this)."""
        acc = self.accelerator
        path = ""
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"config": self.config.to_dict(), "num_processes": acc.num_processes,
                     "start_fingerprint": self.start_fingerprint}
            path = save_checkpoint(self.checkpoint_dir, step, self.model, self.ema, self.optimizer, self.scheduler,
                                   state, keep=self.config.keep_checkpoints)
        acc.wait_for_everyone()
        return path

    def _sample(self, step: int):
        if not self.accelerator.is_main_process:
            return
        with torch.no_grad():
            image = self.sample_fn(self.ema_model(), step)
        if not isinstance(image, PIL.Image.Image):
            raise GenlabError(f"sample_fn must return a PIL.Image, got {type(image).__name__}")
        folder = os.path.join(self.output_dir, "samples")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"step-{step:06d}.png"))

    def _log(self, entry: dict):
        with open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _truncate_log(self, step: int):
        if not os.path.exists(self.log_path):
            return
        def keep(line):  # a line cut short by a kill is dropped too
            try:
                return json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                return False

        with open(self.log_path) as f:
            lines = [line for line in f if keep(line)]
        with open(self.log_path, "w") as f:
            f.writelines(lines)

    def _warn_changes(self, state: dict):
        saved, now = state.get("config", {}), self.config.to_dict()
        changed = sorted(k for k in now if k not in _HARMLESS_KEYS and saved.get(k) != now[k])
        if state.get("num_processes") != self.accelerator.num_processes:
            changed.append("number of processes")
        if changed:
            logger.warning(f"resuming with changed {changed}: the run will not match an uninterrupted one")
