"""Switches: lists of sub-network widths, and the one rounding rule that maps them to channels.

A switch such as ``[0.5, 0.25, 0.25]`` describes parallel sub-networks. Sub-network ``i`` owns the
channel range ``[w1 + ... + w(i-1), w1 + ... + wi)`` of every layer, as fractions of the layer's base
(width 1.0) channel count. Fractions become channel indices through :func:`channel_index`, applied to
the cumulative offsets (never to the widths one by one), so a boundary at 0.5 is the same channel in
every switch that has one.

A sub-network may also have one width per *stage* of the model (a resolution stage of MobileNet v1,
a residual stage of ResNet), written with slashes: ``[0.25/0.5/0.75/0.5, 0.5]`` is a two-device
switch whose first sub-network has widths 0.25, 0.5, 0.75 and 0.5 in stages 0 to 3 and whose second
has 0.5 everywhere. Every layer belongs to one stage (its input and output channels may belong to
two, at a stage boundary), and in a layer of stage ``s`` the sub-networks own the contiguous,
disjoint ranges given by the widths at stage ``s``. A sub-network whose stage widths are all equal is
uniform and is written as one width, so uniform switches keep their notation, keys and statistics.
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


def exact_width(width: float) -> Fraction:
    """The decimal a user wrote (0.1 stays 1/10, not the nearest binary float)."""
    return Fraction(repr(float(width)))


def channel_index(fraction: Fraction, base_channels: int) -> int:
    """The rounding rule: channel index of a width fraction, rounded half up, computed exactly."""
    return math.floor(fraction * base_channels + Fraction(1, 2))


def _format_width(width: float) -> str:
    return repr(float(width))


def _check_width(w: object, values: object) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise ValueError(f"switch {values!r}: width {w!r} is not a number")
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"switch {values!r}: width {w!r} is not a finite number")
    if w <= 0:
        raise ValueError(f"switch {values!r}: width {w!r} must be positive")
    return w


def _cumulative(widths: Iterable[float]) -> tuple[Fraction, ...]:
    offsets = [Fraction(0)]
    for w in widths:
        offsets.append(offsets[-1] + exact_width(w))
    return tuple(offsets)


class Switch:
    """An immutable list of sub-network widths, e.g. ``Switch([0.5, 0.25, 0.25])``.

    ``str()`` gives the canonical form (``[0.5, 0.25, 0.25]``, ``[4x0.25]``); :meth:`parse` reads it
    back, and also accepts ``1.2``, ``4x0.25``, ``[0.5, 2x0.25]``, ``[0.5, 0.5]x`` and ``;``.
    A sub-network given as a sequence of widths has one width per stage:
    ``Switch([(0.25, 0.5, 0.75, 0.5), 0.5])`` is ``[0.25/0.5/0.75/0.5, 0.5]``.
    """

    __slots__ = ("_num_stages", "_offsets", "_stage_offsets", "_subnets", "_widths")

    def __init__(self, widths: Iterable[float | Sequence[float]]):
        values = list(widths) if not isinstance(widths, (int, float)) else [widths]
        if not values:
            raise ValueError("switch [] is empty: it needs at least one width")
        subnets: list[tuple[float, ...]] = []
        for w in values:
            if isinstance(w, (list, tuple)):
                if not w:
                    raise ValueError(f"switch {values!r}: a sub-network has no stage widths")
                stages = tuple(_check_width(v, values) for v in w)
                # All stages equal: a uniform sub-network, written and keyed as one width.
                subnets.append(stages[:1] if len({exact_width(v) for v in stages}) == 1 else stages)
            else:
                subnets.append((_check_width(w, values),))
        counts = {len(s) for s in subnets if len(s) > 1}
        if len(counts) > 1:
            raise ValueError(f"switch {values!r}: sub-networks give different numbers of stage widths {sorted(counts)}")
        self._num_stages: int | None = counts.pop() if counts else None
        self._subnets: tuple[tuple[float, ...], ...] = tuple(subnets)
        # The nominal width of a non-uniform sub-network is its widest stage (what it must fit into).
        self._widths: tuple[float, ...] = tuple(max(s) for s in subnets)
        n = self._num_stages or 1
        self._stage_offsets: tuple[tuple[Fraction, ...], ...] = tuple(
            _cumulative(s[k] if len(s) > 1 else s[0] for s in subnets) for k in range(n)
        )
        self._offsets: tuple[Fraction, ...] = self._stage_offsets[0] if n == 1 else _cumulative(self._widths)

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
        """The width spanned by the switch (the sum of its widths; per-stage: the widest stage's)."""
        return float(self.total_exact)

    @property
    def total_exact(self) -> Fraction:
        return max(o[-1] for o in self._stage_offsets)

    @property
    def offsets(self) -> tuple[Fraction, ...]:
        """Cumulative fractions ``0, w1, w1 + w2, ...`` (exact); per-stage switches: of the nominal widths."""
        return self._offsets

    # per-stage widths ---------------------------------------------------------------------------
    @property
    def is_uniform(self) -> bool:
        """Whether every sub-network has one width for all layers."""
        return self._num_stages is None

    @property
    def num_stages(self) -> int | None:
        """The number of stage widths of a non-uniform switch; ``None`` for a uniform one."""
        return self._num_stages

    @property
    def stage_widths(self) -> tuple[tuple[float, ...], ...]:
        """Per sub-network, its width in each stage (one entry per stage; uniform: one entry)."""
        n = self._num_stages or 1
        return tuple(s if len(s) > 1 else s * n for s in self._subnets)

    def at_stage(self, stage: int) -> Switch:
        """The uniform switch of the widths this switch has in ``stage``."""
        if self._num_stages is None:
            return self
        if not 0 <= stage < self._num_stages:
            raise ValueError(f"switch {self} has {self._num_stages} stages, there is no stage {stage}")
        return Switch([s[stage] if len(s) > 1 else s[0] for s in self._subnets])

    def stage_offsets(self, stage: int | None = None) -> tuple[Fraction, ...]:
        return self._stage_offsets[self._stage_index(stage)]

    def _stage_index(self, stage: int | None) -> int:
        if self._num_stages is None:
            return 0
        if stage is None:
            raise ValueError(
                f"switch {self} has per-stage widths, but the layer it is applied to has no stage "
                "(models assign stages with paradis.layers.assign_stage)"
            )
        if not 0 <= stage < self._num_stages:
            raise ValueError(f"switch {self} has {self._num_stages} stages, there is no stage {stage}")
        return stage

    def __len__(self) -> int:
        return len(self._widths)

    def __iter__(self):
        return iter(self._widths)

    def __getitem__(self, i: int) -> float:
        return self._widths[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Switch):
            return self._stage_offsets == other._stage_offsets and self._num_stages == other._num_stages
        return NotImplemented

    def __hash__(self) -> int:
        # A uniform switch hashes as before: its offsets alone.
        return hash(self._offsets) if self._num_stages is None else hash((self._stage_offsets, self._num_stages))

    def __repr__(self) -> str:
        return f"Switch({str(self)!r})"

    def _runs(self) -> list[tuple[int, tuple[float, ...]]]:
        runs: list[tuple[int, tuple[float, ...]]] = []
        for w in self._subnets:
            if runs and [exact_width(v) for v in runs[-1][1]] == [exact_width(v) for v in w]:
                runs[-1] = (runs[-1][0] + 1, runs[-1][1])
            else:
                runs.append((1, w))
        return runs

    def __str__(self) -> str:
        # Runs of three or more are compressed (``[4x0.25]``); pairs stay written out, as in
        # the paper's ``[0.5, 0.5]``. Stage widths are joined by slashes (``0.25/0.5/0.75``).
        parts: list[str] = []
        for n, w in self._runs():
            item = "/".join(_format_width(v) for v in w)
            parts.extend([item] * n if n < 3 else [f"{n}x{item}"])
        return "[" + ", ".join(parts) + "]"

    @property
    def slug(self) -> str:
        """A compact name for metric keys and file names, e.g. ``0.5-0.5``, ``4x0.25`` or
        ``0.25_0.5_0.75-0.5`` (stage widths joined by ``_``)."""
        return str(self)[1:-1].replace(", ", "-").replace("/", "_")

    @classmethod
    def from_slug(cls, slug: str) -> Switch:
        """Inverse of :attr:`slug`."""
        return parse_switch("[" + slug.replace("-", ", ").replace("_", "/") + "]")

    @property
    def key(self) -> str:
        """An identifier usable as a module buffer name (no dots), e.g. ``0p5_0p5``; stage widths are
        joined by ``s`` (``0p25s0p5_0p5`` is ``[0.25/0.5, 0.5]``)."""
        return self.slug.replace("_", "s").replace(".", "p").replace("-", "_")

    @classmethod
    def from_key(cls, key: str) -> Switch:
        """Inverse of :attr:`key`."""
        return parse_switch("[" + key.replace("_", ", ").replace("s", "/").replace("p", ".") + "]")

    @property
    def is_single(self) -> bool:
        return len(self._widths) == 1

    # channel geometry -------------------------------------------------------------------------
    def channel_ranges(
        self, base_channels: int, stage: int | None = None, rounding: str = "paradis"
    ) -> tuple[tuple[int, int], ...]:
        """The ``(start, stop)`` channel range of each sub-network in a layer of ``base_channels``
        (channels of ``stage``, for a switch with per-stage widths; ignored by a uniform switch).

        ``rounding="us-nets"`` turns a single width up to 1.0 into channels as US-Nets does
        (``make_divisible(C * w, 8)``); every other switch keeps the shared cumulative rule."""
        if rounding == "us-nets" and self.is_single and self._num_stages is None and self._widths[0] <= 1:
            return ((0, min(base_channels, make_divisible(base_channels * self._widths[0]))),)
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding {rounding!r}: one of {', '.join(ROUNDINGS)}")
        return _channel_ranges(self._stage_offsets[self._stage_index(stage)], base_channels)

    def channels(self, base_channels: int, stage: int | None = None, rounding: str = "paradis") -> int:
        """Total channels the switch uses in a layer of ``base_channels`` (of ``stage``)."""
        return self.channel_ranges(base_channels, stage, rounding)[-1][1]

    def check(
        self,
        *,
        max_width: float | None = None,
        layers: Sequence[tuple[str, int] | tuple[str, int, int | None]] = (),
        num_stages: int | None = None,
        rounding: str = "paradis",
    ) -> None:
        """Raise ``ValueError`` if the switch is wider than ``max_width``, has per-stage widths for
        another number of stages than ``num_stages``, or leaves a sub-network without a whole channel
        in one of ``layers`` (layer name, base channels and, optionally, the stage of those channels)."""
        if max_width is not None and self.total_exact > exact_width(max_width):
            raise ValueError(
                f"switch {self} spans width {self.total:g}, wider than the model's maximum width "
                f"(its wide factor) {max_width:g}"
            )
        if self._num_stages is not None and num_stages is not None and self._num_stages != num_stages:
            raise ValueError(
                f"switch {self} gives {self._num_stages} stage widths per sub-network; the model has "
                f"{num_stages} stages"
            )
        for layer in layers:
            name, base = layer[0], layer[1]
            stage = layer[2] if len(layer) > 2 else None
            if self._num_stages is not None and stage is None:
                raise ValueError(f"switch {self} has per-stage widths, but layer {name!r} has no stage")
            for i, (start, stop) in enumerate(self.channel_ranges(base, stage, rounding)):
                if stop <= start:
                    w = self._subnets[i][0 if len(self._subnets[i]) == 1 else stage]
                    where = "" if self._num_stages is None else f" (stage {stage})"
                    raise ValueError(
                        f"switch {self}: width {_format_width(w)} of sub-network {i} "
                        f"gives no whole channel in layer {name!r}{where} ({base} base channels)"
                    )


@lru_cache(maxsize=4096)
def _channel_ranges(offsets: tuple[Fraction, ...], base_channels: int) -> tuple[tuple[int, int], ...]:
    idx = [channel_index(f, base_channels) for f in offsets]
    return tuple(pairwise(idx))


SwitchLike = Union[Switch, str, float, int, Sequence[float]]  # noqa: UP007 (a runtime alias on 3.10)


ROUNDINGS = ("paradis", "us-nets")


def make_divisible(v: float, divisor: int = 8, min_value: int = 1) -> int:
    """US-Nets' (and TF-slim's) channel rounding: the multiple of ``divisor`` nearest ``v``, never
    below ``min_value`` nor more than 10 % below ``v``."""
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


MAX_SUBNETWORKS = 1024  # a switch of more devices is a typo, and would cost memory to even list


def short(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error never quotes a whole huge input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def _parse_number(token: str, original: str) -> float:
    if not re.fullmatch(_NUMBER, token):
        raise ValueError(f"switch {short(original)}: {short(token)} is not a number")
    return float(token)


def parse_switch(text: SwitchLike) -> Switch:
    """Parse the paper's notation (``1.2``, ``[0.5, 0.5]``, ``4x0.25``, ``[0.5, 2x0.25]``) and per-stage
    widths (``[0.25/0.5/0.75/0.5, 0.5]``, ``[2x0.25/0.5]``)."""
    if isinstance(text, Switch):
        return text
    if isinstance(text, bool):
        raise ValueError(f"switch {text!r} is not a number or a list of widths")
    if isinstance(text, (int, float)):
        return Switch([text])
    if isinstance(text, str) and len(text) > 100_000:
        raise ValueError(f"switch {short(text)}: longer than 100000 characters")
    if not isinstance(text, str):
        try:
            items = list(text)
        except TypeError:
            raise ValueError(f"switch {text!r} is not a number or a list of widths") from None
        widths: list = []
        for item in items:
            if isinstance(item, str):
                widths.extend(parse_switch(item)._subnets)
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
    body = re.sub(r"\s*/\s*", "/", body)  # stage widths may be written with spaces: 0.25 / 0.5
    widths = []
    for part in re.split(r"[,;]", body):
        m = _ITEM.match(part)
        if m is None:
            raise ValueError(f"switch {short(original)}: cannot read {short(part.strip())}")
        stages = m.group("width").split("/")
        values = [_parse_number(t, original) for t in stages]
        width = values[0] if len(values) == 1 else tuple(values)
        count = int(m.group("count")) if m.group("count") else 1
        if count < 1:
            raise ValueError(f"switch {short(original)}: repeat count {count} must be at least 1")
        if count + len(widths) > MAX_SUBNETWORKS:  # checked before the list is built
            raise ValueError(f"switch {short(original)}: more than {MAX_SUBNETWORKS} sub-networks (the limit)")
        widths.extend([width] * count)
    try:
        return Switch(widths)
    except ValueError as err:
        raise ValueError(str(err).replace(f"switch {widths!r}", f"switch {original!r}")) from None
