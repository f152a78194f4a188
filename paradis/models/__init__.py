"""ParaDiS architectures, one family per file, and their registry (:mod:`paradis.models.registry`).

Names load on first use, so that the torch-free registry (``paradis.models.registry``) can be read
without importing torch.
"""

from typing import TYPE_CHECKING

from paradis.util import lazy_names

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


__getattr__ = lazy_names("paradis.models", _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from paradis.models.base import ExtractedSwitch, Fusion, ParaDiSModel, SubNetwork
    from paradis.models.registry import ModelInfo, create_model, list_models, model_info, register_model
