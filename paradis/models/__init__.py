"""ParaDiS architectures, one family per file, and their registry."""

from paradis.models import mobilenet_v1, resnet, wdsr  # noqa: F401  (registers the models)
from paradis.models.base import ExtractedSwitch, Fusion, ParaDiSModel, SubNetwork
from paradis.models.registry import create_model, list_models, register_model

__all__ = [
    "ExtractedSwitch",
    "Fusion",
    "ParaDiSModel",
    "SubNetwork",
    "create_model",
    "list_models",
    "register_model",
]
