"""The shared training loop: `TrainConfig`, `Trainer` and the checkpoint format (see trainer.py for the
exact-resume rules)."""

from .checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .trainer import Trainer, derive_seed

__all__ = ["TrainConfig", "Trainer", "derive_seed", "list_checkpoints", "load_checkpoint", "save_checkpoint"]
