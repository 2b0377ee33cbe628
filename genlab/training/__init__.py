"""The shared training loop: `TrainConfig`, `Trainer` and the checkpoint format (see trainer.py for the
exact-resume rules); recipes and their builders (recipe.py, builders.py). Names are imported on first use."""

from ..lazy_imports import lazy_attributes

_NAMES = {"TrainConfig": ".config", "Trainer": ".trainer", "derive_seed": ".trainer",
          "list_checkpoints": ".checkpoint", "load_checkpoint": ".checkpoint", "save_checkpoint": ".checkpoint"}
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
__all__ = sorted(_NAMES)
