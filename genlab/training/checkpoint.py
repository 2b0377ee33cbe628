"""Training checkpoints: one folder per optimizer step, written atomically.

Layout of `output_dir/checkpoints/step-000123/`:

    model.safetensors    the unwrapped model's state dict (tied weights handled by safetensors.torch.save_model)
    ema.safetensors      EMA weights keyed by parameter name, so they load like model weights
    optimizer.pt         optimizer state dict      } read back with torch.load(weights_only=True):
    scheduler.pt         lr scheduler state dict   } tensors and plain Python values only, no pickled code
    rng_state.pt         global RNG states of the main process
    trainer_state.json   step, config, EMA settings, number of processes

Atomicity: a checkpoint is written into `step-000123.tmp/` and renamed with `os.replace`, so a folder named
`step-N` is always complete and a run killed while saving leaves only a `.tmp` folder, which `list_checkpoints`
ignores and `remove_partial` deletes.

Corruption policy: a complete checkpoint that cannot be read (disk error, file edited or truncated by hand) raises
a GenlabError naming it. We do not fall back to an older checkpoint silently: that would throw away training
without anyone noticing; the message tells the user to delete the folder to resume from the previous one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ..errors import GenlabError, first_line
from ..modeling import check_safetensors_file

MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng_state.pt"
STATE_FILE = "trainer_state.json"
CHECKPOINT_FILES = (MODEL_FILE, EMA_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE, STATE_FILE)

_COMPLETE = re.compile(r"^step-(\d+)$")
_PARTIAL = re.compile(r"^step-(\d+)\.tmp$")
_TRASH = re.compile(r"^step-(\d+)\.trash$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def is_complete(path: str) -> bool:
    """True when a checkpoint folder holds every file a checkpoint consists of (whatever its name says)."""
    return all(os.path.isfile(os.path.join(path, f)) for f in CHECKPOINT_FILES)


def list_checkpoints(root: str) -> list[str]:
    """Paths of the complete checkpoints under `root`, oldest first. `.tmp` / `.trash` folders and folders named
    `step-N` that miss a file (cut short by hand or by a crash outside genlab) are not complete."""
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(root) if (m := _COMPLETE.match(name))]
    return [os.path.join(root, name) for _, name in sorted(found) if is_complete(os.path.join(root, name))]


def delete_checkpoint(path: str) -> None:
    """Delete atomically as far as the name goes: rename to `.trash` first, so an interrupted deletion never
    leaves a `step-N` folder that looks complete."""
    trash = path + ".trash"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_partial(root: str) -> list[str]:
    """Delete half-written `step-N.tmp` folders left by a run killed while saving, `.trash` folders left by an
    interrupted deletion and `step-N` folders that miss a file; returns what was removed."""
    if not os.path.isdir(root):
        return []
    removed = [os.path.join(root, n) for n in os.listdir(root) if _PARTIAL.match(n) or _TRASH.match(n)
               or _COMPLETE.match(n) and not is_complete(os.path.join(root, n))]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def save_checkpoint(root: str, step: int, model, ema, optimizer, scheduler, state: dict, keep: int) -> str:
    """Write the checkpoint of `step` atomically, then delete all but the newest `keep` checkpoints.

    `state` (JSON-serialisable: config, number of processes, ...) goes into trainer_state.json with the step.
    Call on the main process only.
    """
    final = os.path.join(root, checkpoint_name(step))
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_model(model, os.path.join(tmp, MODEL_FILE))
    names = [name for name, _ in model.named_parameters()]  # same order EMAModel got from model.parameters()
    save_file({n: p.detach().contiguous() for n, p in zip(names, ema.shadow_params)}, os.path.join(tmp, EMA_FILE))
    torch.save(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_FILE))
    torch.save(scheduler.state_dict(), os.path.join(tmp, SCHEDULER_FILE))
    torch.save(_rng_states(), os.path.join(tmp, RNG_FILE))
    ema_settings = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
    with open(os.path.join(tmp, STATE_FILE), "w") as f:
        json.dump({"step": step, "ema": ema_settings, **state}, f, indent=2)
    if os.path.isdir(final):  # only after a deliberate restart from an older step; the new state wins
        delete_checkpoint(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        delete_checkpoint(old)
    return final


def load_checkpoint(path: str, model, ema, optimizer, scheduler) -> dict:
    """Load a checkpoint written by `save_checkpoint` into the given objects; returns trainer_state.json.

    Raises GenlabError naming `path` when a file is unreadable, or when the checkpoint does not fit `model`.
    """

    def unreadable(what, err):
        return GenlabError(f"checkpoint {path} is unreadable ({what}: {first_line(err, 200)}); delete it to resume "
                           "from the previous one")

    # Read everything first, so a corrupt file is reported before any object is modified.
    try:
        with open(os.path.join(path, STATE_FILE)) as f:
            state = json.load(f)
        int(state["step"])
    except Exception as e:
        raise unreadable(STATE_FILE, e) from None
    for name in (MODEL_FILE, EMA_FILE):
        try:
            check_safetensors_file(os.path.join(path, name))
        except GenlabError as e:
            raise unreadable(name, e) from None
    try:
        ema_weights = load_file(os.path.join(path, EMA_FILE))
    except Exception as e:
        raise unreadable(EMA_FILE, e) from None
    loaded = {}
    for name in (OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE):
        try:
            loaded[name] = torch.load(os.path.join(path, name), map_location="cpu", weights_only=True)
        except Exception as e:
            raise unreadable(name, e) from None

    def mismatch(err):
        return GenlabError(f"checkpoint {path} does not fit this model ({first_line(err)})")

    try:
        load_model(model, os.path.join(path, MODEL_FILE), strict=True)
        optimizer.load_state_dict(loaded[OPTIMIZER_FILE])
    except (RuntimeError, ValueError, KeyError) as e:
        raise mismatch(e) from None
    params = dict(model.named_parameters())
    if set(ema_weights) != set(params) or any(ema_weights[n].shape != p.shape for n, p in params.items()):
        raise mismatch("EMA weights have other names or shapes than the model's parameters")
    shadows = [ema_weights[n].to(s.device) for n, s in zip(params, ema.shadow_params)]
    ema.load_state_dict({**state["ema"], "shadow_params": shadows})
    scheduler.load_state_dict(loaded[SCHEDULER_FILE])
    _set_rng_states(loaded[RNG_FILE])
    return state


def _rng_states() -> dict:
    # The training loop reseeds every step from (seed, step, rank), so exact resume does not depend on these;
    # they are saved so that anything drawing random numbers before the first resumed step sees the same stream.
    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict):
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
