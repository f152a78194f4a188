"""Small pieces every package shares: lazily loaded package names (so that torch-free modules stay
torch-free), the first line of an error, and writing a file atomically."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
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


class NoSpaceLeft(OSError):
    """A file could not be written for want of space; says where and how much."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name beside it, moved into place only when
    complete: a failed write (a full disk) leaves neither a truncated file under the final name nor
    the temporary file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            full = NoSpaceLeft(f"no space left on {path.parent} ({len(data)} bytes needed)")
            full.errno = err.errno
            raise full from None
        raise


def parse_duration(text: str | float, where: str) -> float:
    """``2h``, ``90m``, ``45s`` or plain seconds, as seconds (1 s to 30 days); ``ValueError`` naming
    ``where`` otherwise."""
    t = str(text).strip().lower()
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0}.get(t[-1:])
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"{where} {text!r}: not a duration (e.g. 2h, 90m, 60s, 3600)") from None
    if not 1 <= value <= 30 * 86400:
        raise ValueError(f"{where} {text!r}: not a duration between 1 s and 30 days")
    return value
