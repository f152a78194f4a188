"""Lazily loaded package names, so that torch-free modules stay torch-free."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` (a module path) on first use and keeps it."""

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def first_line(value: BaseException | str, limit: int | None = 300) -> str:
    """The first line of an error's (or a text's) message, at most ``limit`` characters: what a
    one-line refusal quotes. An exception with an empty message is named by its type."""
    text = str(value).strip()
    if not text:
        return type(value).__name__ if isinstance(value, BaseException) else ""
    return text.splitlines()[0][:limit]
