"""What changed between two dumps of a configuration (a checkpoint's and the run's, a study run's and
the resumed spec's): a resume may change only what decides the measurement or the speed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Keys of a run configuration a resumed run may change: they decide what is measured and how fast, not
# what is trained.
RUN_RESUMABLE = ("evaluation.", "threads", "device", "data.num_workers", "channels_last")
UNSET = "<unset>"


def leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` for every leaf of nested mappings."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def config_changes(saved: dict, current: dict, resumable: Sequence[str] = RUN_RESUMABLE) -> list[str]:
    """``key: saved -> current`` for every key that differs, sorted, but those starting with one of
    ``resumable``."""
    old, new = leaves(saved), leaves(current)
    return [
        f"{k}: {old.get(k, UNSET)!r} -> {new.get(k, UNSET)!r}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k, UNSET) != new.get(k, UNSET) and not k.startswith(tuple(resumable))
    ]


def describe_changes(changes: list[str], most: int = 4) -> str:
    """The first ``most`` changes, and how many more, for a one-line refusal."""
    shown = "; ".join(changes[:most])
    return shown + (f"; and {len(changes) - most} more" if len(changes) > most else "")
