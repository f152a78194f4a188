"""Reading an export folder that may come from elsewhere, without running anything it holds.

Every loader of :mod:`paradis.deploy` goes through here:

- the manifest is JSON (``json.loads``: no code runs), at most :data:`MAX_MANIFEST_BYTES`, without NaN
  or infinities, and every file name in it is a plain relative path inside the folder (no ``..``, no
  absolute path, no backslash or NUL; a symbolic link that resolves outside the folder is refused);
- a file is read into memory, its size and SHA-256 compared with what the manifest records, and only
  then handed to the loader *as those bytes* (so the file cannot change between check and load); a file
  the manifest records no digest for is refused.

The digests make an export tamper-evident *against its manifest*. They do not make a hostile manifest
safe: whether a file is safe to load then depends on its format (``docs/SECURITY.md``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from paradis.util import first_line

MAX_MANIFEST_BYTES = 4 << 20  # a manifest of 1024 devices and 100k classes stays far below this
MAX_JSON_BYTES = 16 << 20  # plan tables, latency tables, history.json
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ExportError(ValueError):
    """A model or export folder that cannot be exported or read; names the path and what is wrong."""


def quote(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error never quotes a whole huge input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def check_name(name: object, where: str) -> str:
    """``name`` if it is a plain relative file name that stays inside the export folder."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ExportError(f"{where}: file name {quote(name)} is not a non-empty string of at most 255 characters")
    p = PurePosixPath(name)
    if "\x00" in name or "\\" in name or p.is_absolute() or ".." in p.parts or name.startswith("~"):
        raise ExportError(f"{where}: file name {quote(name)} leaves the export folder; refused")
    return name


def member_path(folder: str | os.PathLike, name: str, where: str) -> Path:
    """The path of ``name`` in ``folder``, refused when it (or a symbolic link on the way) leaves it."""
    check_name(name, where)
    root = Path(folder).resolve()
    path = root / name
    target = path.resolve()
    if target != root and root not in target.parents:
        raise ExportError(f"{where}: {quote(name)} is a symbolic link that leaves the export folder; refused")
    return path


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked before and while reading)."""
    if not path.is_file():
        raise ExportError(f"{what} {quote(str(path))} does not exist or is not a file")
    size = path.stat().st_size
    if size > limit:
        raise ExportError(f"{what} {quote(str(path))} has {size} bytes, more than the limit of {limit}; refused")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ExportError(f"{what} {quote(str(path))} grew past the limit of {limit} bytes while read; refused")
    return data


def _no_constant(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: with a key twice, parsers disagree on which one counts
    (Python's keeps the last), so a digest checked here could differ from the one another reader uses."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {quote(key)} appears twice in an object")
        out[key] = value
    return out


def parse_json(data: bytes, where: str) -> Any:
    """JSON without NaN or infinities, each object's keys different; a damaged or absurdly nested text is
    one clear error."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ExportError(f"{where}: not valid JSON ({type(err).__name__}: {first_line(err, 200)})") from None


def read_json(path: str | os.PathLike, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of at most ``limit`` bytes, read without running anything."""
    p = Path(path)
    return parse_json(read_limited(p, limit, what), f"{what} {quote(str(p))}")


def check_digest_entry(name: str, entry: object, where: str) -> None:
    """A manifest's ``files[name]``: ``{"bytes": n >= 0, "sha256": 64 lower-case hex digits}``."""
    if not isinstance(entry, Mapping):
        raise ExportError(f"{where}: files[{quote(name)}] is not an object")
    size, digest = entry.get("bytes"), entry.get("sha256")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ExportError(f"{where}: files[{quote(name)}].bytes {quote(size)} is not a byte count")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ExportError(f"{where}: files[{quote(name)}].sha256 {quote(digest)} is not a SHA-256 hex digest")


def read_verified(folder: str | os.PathLike, name: str, files: Mapping[str, Any], where: str) -> bytes:
    """The bytes of ``name`` once its size and SHA-256 match ``files[name]`` (the manifest's record);
    nothing is parsed before that."""
    path = member_path(folder, name, where)
    entry = files.get(name)
    if entry is None:
        raise ExportError(
            f"{path}: the manifest records no SHA-256 for {name!r}; an unverified file is not loaded "
            "(re-export it with this version of paradis)"
        )
    check_digest_entry(name, entry, where)
    if not path.is_file():
        raise ExportError(f"{path}: the file the manifest names is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ExportError(
            f"{path}: {size} bytes where the manifest records {entry['bytes']}: changed or damaged; not loaded"
        )
    with open(path, "rb") as f:
        data = f.read(size + 1)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != size or digest != entry["sha256"]:
        raise ExportError(
            f"{path}: SHA-256 {digest[:16]}... does not match the manifest's {entry['sha256'][:16]}...: "
            "changed or damaged; not loaded"
        )
    return data


def finite_number(value: object, what: str, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float when it is a real number (not a bool), finite and within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} {quote(value)} is not a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        raise ValueError(f"{what} {quote(value)} is outside {span}")
    return float(value)


def count(value: object, what: str, *, low: int = 0, high: int | None = None) -> int:
    """``value`` when it is an int (not a bool, not a float) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} {quote(value)} is not an integer")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{what} {quote(value)} is outside [{low}, {'inf' if high is None else high}]")
    return value
