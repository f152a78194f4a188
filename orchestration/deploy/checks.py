"""Checks of the command line's values, made before anything is loaded or started.

A deploy command refuses careless or hostile input with one line (``deploy <cmd>: error: ...``, exit 2):
numbers outside the bounds below, switches that do not parse, outputs that are files, folders that
would be overwritten. Values are quoted with :func:`paradis.deploy.files.quote` (at most ~200 characters).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from paradis.deploy.files import quote
from paradis.deploy.onnx import EdgeOptions, check_installed
from paradis.switch import Switch, parse_switch

MAX_BATCH = 65_536
MAX_INPUT_BYTES = 1 << 30  # one batch of inputs (float32) held in memory
MAX_DEVICES = 256  # actors of one pool / devices of one plan
MAX_THREADS = 1024
MAX_REPEATS = 100_000
MAX_SWITCH_TEXT = 1000
_RUN_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class CommandError(ValueError):
    """A value of the command line that cannot work; the message names it."""


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quote(text)} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{quote(text)} is outside [{low}, {high}]")
        return value

    parse.__name__ = "integer"
    return parse


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quote(text)} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{quote(text)} is not a finite number")
        if value < low or value > high or (low_open and value == low):
            span = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"{quote(text)} is outside {span}")
        return value

    parse.__name__ = "number"
    return parse


def switch_arg(text: str) -> str:
    """An argparse ``type``: a switch in the paper's notation, canonical (``[0.5, 0.5]``)."""
    if len(text) > MAX_SWITCH_TEXT:
        raise argparse.ArgumentTypeError(f"switch {quote(text)} is longer than {MAX_SWITCH_TEXT} characters")
    try:
        return str(parse_switch(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_id_arg(text: str) -> str:
    """An argparse ``type``: an MLflow run id (letters, digits, ``-`` and ``_``)."""
    if not _RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{quote(text)} is not an MLflow run id")
    return text


def check_batch(batch: int, input_size: Sequence[int], what: str) -> None:
    """A batch of ``input_size`` float32 images must fit :data:`MAX_INPUT_BYTES`."""
    size = 4 * batch * math.prod(input_size)
    if size > MAX_INPUT_BYTES:
        raise CommandError(
            f"{what} {batch} of {tuple(input_size)} images is {size / 2**30:.1f} GiB of input, more than "
            f"{MAX_INPUT_BYTES / 2**30:g} GiB"
        )


def check_output_file(path: str | None, what: str) -> None:
    """A file the command will write: not a folder, in a folder that exists."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise CommandError(f"{what} {quote(path)} is a folder, not a file")
    if not p.parent.is_dir():
        raise CommandError(f"{what} {quote(path)}: folder {quote(str(p.parent))} does not exist")


def check_output_folder(path: str, what: str) -> None:
    """A folder the command will write into: not a file, its parent a folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CommandError(f"{what} {quote(path)} is a file, not a folder")
    parent = p.resolve().parent
    if not p.exists() and not parent.is_dir():
        raise CommandError(f"{what} {quote(path)}: folder {quote(str(parent))} does not exist")


def switches_with_stats(model, switches: Sequence[str], what: str) -> list[Switch]:
    """``switches`` resolved for ``model``, each with BN statistics (else it cannot run)."""
    out = []
    for text in switches:
        s = model.resolve(text)
        if not model.has_bn_stats(s):
            known = ", ".join(map(str, model.bn_switches())) or "none"
            raise CommandError(f"{what} {s} has no BN statistics in this model; switches with statistics: {known}")
        out.append(s)
    return out


def edge_options(args: argparse.Namespace) -> EdgeOptions:
    """The edge formats ``export`` was asked for, with their modules checked to be installed."""
    edge = EdgeOptions(
        formats=tuple(dict.fromkeys(args.format or ())),
        quantize=args.quantize,
        test_images=args.test_images,
        calibration_batches=args.calibration_batches,
        batch_size=args.calibration_batch_size,
        data_root=args.data_root,
        threads=args.threads,
    )
    try:
        check_installed(edge)
    except ImportError as err:
        raise CommandError(str(err)) from None
    return edge
