"""ParaDiS architectures, one family per file, and their registry (:mod:`paradis.models.registry`).

Names load on first use, so that the torch-free registry (``paradis.models.registry``) can be read
without importing torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY = {
    "ExtractedSwitch": "paradis.models.base",
    "Fusion": "paradis.models.base",
    "ParaDiSModel": "paradis.models.base",
    "SubNetwork": "paradis.models.base",
    "ModelInfo": "paradis.models.registry",
    "create_model": "paradis.models.registry",
    "list_models": "paradis.models.registry",
    "model_info": "paradis.models.registry",
    "register_model": "paradis.models.registry",
}
__all__ = [  # noqa: RUF022 (grouped as _LAZY)
    "ExtractedSwitch",
    "Fusion",
    "ParaDiSModel",
    "SubNetwork",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'paradis.models' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from paradis.models.base import ExtractedSwitch, Fusion, ParaDiSModel, SubNetwork
    from paradis.models.registry import ModelInfo, create_model, list_models, model_info, register_model
