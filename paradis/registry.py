"""The one registry mechanism of the project: models, data sets, methods, tasks, study searches and
the report's claims are each a :class:`Registry`.

As torchvision's model registry, a name is registered once; as timm's ``list_models``, listings are
sorted; an unknown name raises :class:`UnknownNameError` (a ``ValueError``) that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no registry entry has; the message lists the known names."""


class Registry(Generic[T]):
    """Named entries of one kind (``what``: "model", "method", "data set"...)."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a second registration of a name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return self._entries[name]

    __getitem__ = get

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """The registered names, sorted; with ``where``, those whose entry it accepts."""
        return sorted(n for n, e in self._entries.items() if where is None or where(e))

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]

    def values(self) -> list[T]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """The names, sorted, as iterating a mapping does."""
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
