"""Switches: lists of sub-network widths, and the one rounding rule that maps them to channels.

A switch such as ``[0.5, 0.25, 0.25]`` describes parallel sub-networks. Sub-network ``i`` owns the
channel range ``[w1 + ... + w(i-1), w1 + ... + wi)`` of every layer, as fractions of the layer's base
(width 1.0) channel count. Fractions become channel indices through :func:`channel_index`, applied to
the cumulative offsets (never to the widths one by one), so a boundary at 0.5 is the same channel in
every switch that has one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import pairwise
from typing import Union

__all__ = ["Switch", "SwitchLike", "channel_index", "parse_switch"]

_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_ITEM = re.compile(r"^\s*(?:(?P<count>[0-9]+)\s*[xX×*]\s*)?(?P<width>[^\s]+)\s*$")


def _exact(width: float) -> Fraction:
    """The decimal a user wrote (0.1 stays 1/10, not the nearest binary float)."""
    return Fraction(repr(float(width)))


def channel_index(fraction: Fraction, base_channels: int) -> int:
    """The rounding rule: channel index of a width fraction, rounded half up, computed exactly."""
    return math.floor(fraction * base_channels + Fraction(1, 2))


def _format_width(width: float) -> str:
    return repr(float(width))


class Switch:
    """An immutable list of sub-network widths, e.g. ``Switch([0.5, 0.25, 0.25])``.

    ``str()`` gives the canonical form (``[0.5, 0.25, 0.25]``, ``[4x0.25]``); :meth:`parse` reads it
    back, and also accepts ``1.2``, ``4x0.25``, ``[0.5, 2x0.25]``, ``[0.5, 0.5]x`` and ``;``.
    """

    __slots__ = ("_offsets", "_widths")

    def __init__(self, widths: Iterable[float]):
        values = list(widths) if not isinstance(widths, (int, float)) else [widths]
        if not values:
            raise ValueError("switch [] is empty: it needs at least one width")
        checked: list[float] = []
        for w in values:
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ValueError(f"switch {values!r}: width {w!r} is not a number")
            w = float(w)
            if not math.isfinite(w):
                raise ValueError(f"switch {values!r}: width {w!r} is not a finite number")
            if w <= 0:
                raise ValueError(f"switch {values!r}: width {w!r} must be positive")
            checked.append(w)
        self._widths: tuple[float, ...] = tuple(checked)
        offsets = [Fraction(0)]
        for w in checked:
            offsets.append(offsets[-1] + _exact(w))
        self._offsets: tuple[Fraction, ...] = tuple(offsets)

    # construction -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: SwitchLike) -> Switch:
        return parse_switch(text)

    # value semantics ----------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[float, ...]:
        return self._widths

    @property
    def total(self) -> float:
        """The width spanned by the switch (the sum of its widths)."""
        return float(self._offsets[-1])

    @property
    def total_exact(self) -> Fraction:
        return self._offsets[-1]

    @property
    def offsets(self) -> tuple[Fraction, ...]:
        """Cumulative fractions ``0, w1, w1 + w2, ...`` (exact)."""
        return self._offsets

    def __len__(self) -> int:
        return len(self._widths)

    def __iter__(self):
        return iter(self._widths)

    def __getitem__(self, i: int) -> float:
        return self._widths[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Switch):
            return self._offsets == other._offsets
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._offsets)

    def __repr__(self) -> str:
        return f"Switch({str(self)!r})"

    def _runs(self) -> list[tuple[int, float]]:
        runs: list[tuple[int, float]] = []
        for w in self._widths:
            if runs and _exact(runs[-1][1]) == _exact(w):
                runs[-1] = (runs[-1][0] + 1, runs[-1][1])
            else:
                runs.append((1, w))
        return runs

    def __str__(self) -> str:
        # Runs of three or more are compressed (``[4x0.25]``); pairs stay written out, as in
        # the paper's ``[0.5, 0.5]``.
        parts: list[str] = []
        for n, w in self._runs():
            parts.extend([_format_width(w)] * n if n < 3 else [f"{n}x{_format_width(w)}"])
        return "[" + ", ".join(parts) + "]"

    @property
    def slug(self) -> str:
        """A compact name for metric keys and file names, e.g. ``0.5-0.5`` or ``4x0.25``."""
        return str(self)[1:-1].replace(", ", "-")

    @property
    def key(self) -> str:
        """An identifier usable as a module buffer name (no dots), e.g. ``0p5_0p5``."""
        return self.slug.replace(".", "p").replace("-", "_")

    @classmethod
    def from_key(cls, key: str) -> Switch:
        """Inverse of :attr:`key`."""
        return parse_switch("[" + key.replace("_", ", ").replace("p", ".") + "]")

    @property
    def is_single(self) -> bool:
        return len(self._widths) == 1

    # channel geometry -------------------------------------------------------------------------
    def channel_ranges(self, base_channels: int) -> tuple[tuple[int, int], ...]:
        """The ``(start, stop)`` channel range of each sub-network in a layer of ``base_channels``."""
        return _channel_ranges(self._offsets, base_channels)

    def channels(self, base_channels: int) -> int:
        """Total channels the switch uses in a layer of ``base_channels``."""
        return channel_index(self._offsets[-1], base_channels)

    def check(self, *, max_width: float | None = None, layers: Sequence[tuple[str, int]] = ()) -> None:
        """Raise ``ValueError`` if the switch is wider than ``max_width`` or leaves a sub-network
        without a whole channel in one of ``layers`` (pairs of layer name and base channels)."""
        if max_width is not None and self._offsets[-1] > _exact(max_width):
            raise ValueError(
                f"switch {self} spans width {self.total:g}, wider than the model's maximum width "
                f"(its wide factor) {max_width:g}"
            )
        for name, base in layers:
            for i, (start, stop) in enumerate(self.channel_ranges(base)):
                if stop <= start:
                    raise ValueError(
                        f"switch {self}: width {_format_width(self._widths[i])} of sub-network {i} "
                        f"gives no whole channel in layer {name!r} ({base} base channels)"
                    )


@lru_cache(maxsize=4096)
def _channel_ranges(offsets: tuple[Fraction, ...], base_channels: int) -> tuple[tuple[int, int], ...]:
    idx = [channel_index(f, base_channels) for f in offsets]
    return tuple(pairwise(idx))


SwitchLike = Union[Switch, str, float, int, Sequence[float]]  # noqa: UP007 (a runtime alias on 3.10)


def _parse_number(token: str, original: str) -> float:
    if not re.fullmatch(_NUMBER, token):
        raise ValueError(f"switch {original!r}: {token!r} is not a number")
    return float(token)


def parse_switch(text: SwitchLike) -> Switch:
    """Parse the paper's notation (``1.2``, ``[0.5, 0.5]``, ``4x0.25``, ``[0.5, 2x0.25]``)."""
    if isinstance(text, Switch):
        return text
    if isinstance(text, bool):
        raise ValueError(f"switch {text!r} is not a number or a list of widths")
    if isinstance(text, (int, float)):
        return Switch([text])
    if not isinstance(text, str):
        try:
            items = list(text)
        except TypeError:
            raise ValueError(f"switch {text!r} is not a number or a list of widths") from None
        widths: list[float] = []
        for item in items:
            if isinstance(item, str):
                widths.extend(parse_switch(item).widths)
            else:
                widths.append(item)
        return Switch(widths)
    original = text
    body = text.strip()
    if re.search(r"\][xX×]$", body):  # the paper writes [0.5, 0.5]x
        body = body[:-1]
    if body.startswith("[") != body.endswith("]"):
        raise ValueError(f"switch {original!r}: unbalanced brackets")
    if body.startswith("["):
        body = body[1:-1]
    if not body.strip():
        raise ValueError(f"switch {original!r} is empty: it needs at least one width")
    widths = []
    for part in re.split(r"[,;]", body):
        m = _ITEM.match(part)
        if m is None:
            raise ValueError(f"switch {original!r}: cannot read {part.strip()!r}")
        width = _parse_number(m.group("width"), original)
        count = int(m.group("count")) if m.group("count") else 1
        if count < 1:
            raise ValueError(f"switch {original!r}: repeat count {count} must be at least 1")
        widths.extend([width] * count)
    try:
        return Switch(widths)
    except ValueError as err:
        raise ValueError(str(err).replace(f"switch {widths!r}", f"switch {original!r}")) from None
