"""Model registry: ``create_model(name, ...)`` and ``list_models()``; fails loudly on bad names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from paradis.models.base import ParaDiSModel

_REGISTRY: dict[str, Callable[..., ParaDiSModel]] = {}
F = TypeVar("F", bound=Callable[..., ParaDiSModel])


def register_model(fn: F) -> F:
    """Register a model factory under its function name; a second registration is an error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, *, num_classes: int, wide_factor: float = 1.2, **kwargs) -> ParaDiSModel:
    """Build a registered model, e.g. ``create_model("mobilenet_v1", num_classes=1000)``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes {num_classes!r} must be a positive integer")
    return _REGISTRY[name](num_classes=num_classes, wide_factor=wide_factor, **kwargs)
