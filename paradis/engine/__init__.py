"""The training engine: :class:`Trainer` (the loop), with its optimizer and schedule factories
(``optim``), checkpoints (``checkpoint``), set-up (``setup``), evaluation and tables
(``evaluation``) and metric names (``metrics``) beside it."""

from paradis.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from paradis.engine.trainer import DistributedInfo, EpochReport, NonFiniteLoss, Trainer, TrainResult, run_training

__all__ = [
    "CheckpointError",
    "DistributedInfo",
    "EpochReport",
    "NonFiniteLoss",
    "TrainResult",
    "Trainer",
    "load_checkpoint",
    "run_training",
    "save_checkpoint",
]
