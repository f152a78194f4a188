"""The training engine: :class:`Trainer` (the loop), with its optimizer and schedule factories
(``optim``), checkpoints (``checkpoint``), set-up (``setup``), evaluation and tables
(``evaluation``) and metric names (``metrics``, torch-free) beside it.

Names load on first use, so that ``paradis.engine.metrics`` is read without importing torch.
"""

from typing import TYPE_CHECKING

from paradis.util import lazy_names

_LAZY = {
    "CheckpointError": "paradis.engine.checkpoint",
    "load_checkpoint": "paradis.engine.checkpoint",
    "save_checkpoint": "paradis.engine.checkpoint",
    "DistributedInfo": "paradis.engine.trainer",
    "EpochReport": "paradis.engine.trainer",
    "NonFiniteLoss": "paradis.engine.trainer",
    "TrainResult": "paradis.engine.trainer",
    "Trainer": "paradis.engine.trainer",
    "run_training": "paradis.engine.trainer",
}
__all__ = [  # noqa: RUF022 (grouped as _LAZY)
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "DistributedInfo",
    "EpochReport",
    "NonFiniteLoss",
    "TrainResult",
    "Trainer",
    "run_training",
]


__getattr__ = lazy_names("paradis.engine", _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from paradis.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from paradis.engine.trainer import DistributedInfo, EpochReport, NonFiniteLoss, Trainer, TrainResult, run_training
