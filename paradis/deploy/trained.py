"""A trained ParaDiS model, read from what :mod:`paradis.engine` writes (``checkpoint.pt``, or a bare
``model.pt`` with ``history.json`` beside it), with what deployment needs to know about it: the
model's registry arguments, its input, its data set and the accuracy of each evaluated switch.

Checkpoints are read with ``weights_only=True`` (no code runs) and every part is type-checked, so a
damaged or foreign file is one :class:`~paradis.deploy.files.ExportError` naming what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from paradis.data.registry import dataset_info, list_datasets
from paradis.deploy.files import (
    MAX_JSON_BYTES,
    ExportError,
    count,
    finite_number,
    quote,
    read_json,
)
from paradis.deploy.manifest import MAX_IMAGE_SIDE
from paradis.engine.metrics import measures_by_switch
from paradis.models import ParaDiSModel, create_model, list_models
from paradis.switch import ROUNDINGS, parse_switch
from paradis.util import first_line


@dataclass
class TrainedModel:
    """A trained ParaDiS model with what deployment needs to know about it."""

    model: ParaDiSModel
    model_name: str
    num_classes: int
    in_chans: int
    wide_factor: float
    input_size: tuple[int, int, int]
    dataset: str | None = None
    # top-1 accuracy (fraction) of each evaluated switch, keyed by the canonical switch string
    accuracy: dict[str, float] = field(default_factory=dict)
    source: str = ""
    # the run configuration (RunConfig as a dict) when known: how its data set, BN calibration images
    # and test split were made, which the edge export reuses (int8 calibration, test accuracy)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        model: ParaDiSModel,
        model_name: str,
        input_size: Sequence[int],
        *,
        accuracy: Mapping[str, float] | None = None,
        dataset: str | None = None,
        source: str = "in-memory model",
        config: Mapping[str, Any] | None = None,
    ) -> TrainedModel:
        """Wrap a model in memory (``model_name`` is its registry name, as ``create_model`` takes;
        ``config``: the run configuration as a dict, whose data and calibration the edge export reuses)."""
        num_classes, in_chans = _shapes_from_state(model.state_dict(), source)
        acc = {str(parse_switch(k)): float(v) for k, v in (accuracy or {}).items()}
        size = tuple(int(v) for v in input_size)
        wf = model.wide_factor
        return cls(model, model_name, num_classes, in_chans, wf, size, dataset, acc, source, dict(config or {}))  # type: ignore[arg-type]

    def model_args(self) -> dict[str, Any]:
        """The registry arguments of the model (:func:`model_from_args` builds it): for a trained run,
        what :func:`paradis.tasks.model_arguments` gave its configuration and data set."""
        return {
            "name": self.model_name,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "wide_factor": self.wide_factor,
            "rounding": self.model.rounding,
        }


def model_from_args(args: Mapping[str, Any]) -> ParaDiSModel:
    """The untrained model of :meth:`TrainedModel.model_args` (or a manifest's ``model``; a manifest
    written before the rounding option used the shared rule)."""
    return create_model(
        args["name"],
        num_classes=int(args["num_classes"]),
        wide_factor=float(args["wide_factor"]),
        in_chans=int(args["in_chans"]),
        rounding=str(args.get("rounding", "paradis")),
    )


def _shapes_from_state(state: Mapping[str, torch.Tensor], where: str) -> tuple[int, int]:
    """``(num_classes, in_chans)`` read off the classifier and the stem of a state dict."""
    try:
        return int(state["head.weight"].shape[0]), int(state["stem.weight"].shape[1])
    except (KeyError, AttributeError, IndexError):
        raise ExportError(
            f"{quote(where)}: not the state dict of a ParaDiS classifier (no head.weight / stem.weight); only "
            "classifiers (mobilenet_v1*, resnet*) can be deployed"
        ) from None


def accuracy_from_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """``{"[0.5, 0.5]": 0.89, ...}`` from metrics named ``acc/<switch slug>`` (trainer, MLflow)."""
    return measures_by_switch(metrics, "acc")


def input_size_for(dataset: str | None, in_chans: int, image_size: int | None = None) -> tuple[int, int, int] | None:
    """The input a data set gives its models (from the data set registry; ImageNet at its crop size)."""
    if dataset not in list_datasets() or dataset_info(dataset).task != "classification":
        return None
    if dataset == "imagenet" and image_size:
        return (in_chans, image_size, image_size)
    return (in_chans, *dataset_info(dataset).input_size[1:])


def load_trained(
    path: str | os.PathLike,
    *,
    model_name: str | None = None,
    wide_factor: float | None = None,
    input_size: Sequence[int] | None = None,
    accuracy: Mapping[str, float] | None = None,
) -> TrainedModel:
    """A model from a file written by :mod:`paradis.engine` (``checkpoint.pt``: model, configuration
    and metrics history) or a bare state dict (``model.pt`` of ``python -m paradis train --output``:
    then ``model_name`` is required, and accuracies are read from ``history.json`` beside it).

    Read with ``weights_only=True`` (no code runs); every part of the file is checked for its type, so a
    damaged or foreign file is one :class:`ExportError` naming what is wrong."""
    p = _model_file(Path(path))
    where = quote(str(p))
    config, state, history = _checkpoint_parts(_read_checkpoint(p), p)
    name = model_name or config["model"].get("name")
    if not name:
        raise ExportError(f"{where} is a bare state dict: give the model name (e.g. mobilenet_v1_small)")
    if not isinstance(name, str) or name not in list_models():
        raise ExportError(f"{where}: model {quote(name)} is not a registered model; known: {', '.join(list_models())}")
    wf = wide_factor if wide_factor is not None else config["training"].get("wide_factor", 1.2)
    wf = _checked(finite_number, wf, f"{where}: wide factor", low=1e-3, high=16.0)
    num_classes, in_chans = _shapes_from_state(state, str(p))
    dataset, size = _input_of(config["data"], in_chans, input_size, where)
    rounding = config["model"].get("rounding") or "paradis"  # checkpoints before the option: the shared rule
    if rounding not in ROUNDINGS:
        raise ExportError(f"{where}: config.model.rounding {quote(rounding)} is not one of {', '.join(ROUNDINGS)}")
    model = _model_with_state(name, num_classes, wf, in_chans, state, where, rounding)
    acc: dict[str, float] = {}
    for metrics in history:  # the last evaluation of each switch wins
        acc.update(accuracy_from_metrics(metrics))
    acc.update({str(parse_switch(k)): v for k, v in (accuracy or {}).items()})
    for s, v in acc.items():
        _checked(finite_number, v, f"{where}: top-1 accuracy of switch {s}", low=0.0, high=1.0)
    return TrainedModel(model, name, num_classes, in_chans, wf, size, dataset, acc, str(p), config)


def _checked(check: Any, value: object, what: str, **bounds: Any) -> Any:
    """``check(value, what, **bounds)`` with its ``ValueError`` as an :class:`ExportError`."""
    try:
        return check(value, what, **bounds)
    except ExportError:
        raise
    except ValueError as err:
        raise ExportError(str(err)) from None


def _model_file(p: Path) -> Path:
    """``p``, or the ``checkpoint.pt`` / ``model.pt`` in folder ``p``."""
    if p.is_dir():
        found = [p / n for n in ("checkpoint.pt", "model.pt") if (p / n).is_file()]
        if not found:
            raise ExportError(f"{quote(str(p))} holds neither checkpoint.pt nor model.pt")
        p = found[0]
    if not p.is_file():
        raise ExportError(f"model file {quote(str(p))} does not exist or is not a file")
    return p


def _read_checkpoint(p: Path) -> dict:
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        first = first_line(str(err), 200)
        raise ExportError(f"{quote(str(p))} cannot be read ({type(err).__name__}: {first})") from None
    if not isinstance(blob, dict):
        raise ExportError(f"{quote(str(p))} is not a checkpoint or a state dict (a {type(blob).__name__})")
    return blob


def _checkpoint_parts(blob: dict, p: Path) -> tuple[dict, dict, list]:
    """``(config, state dict, history)`` of a checkpoint or a bare state dict, each type-checked."""
    where = quote(str(p))
    is_checkpoint = any(k in blob for k in ("model", "config", "history"))
    state = blob.get("model") if is_checkpoint else blob
    config = (blob.get("config") if is_checkpoint else None) or {}
    history = blob.get("history") if is_checkpoint else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{where}: its model is not a state dict of tensors")
    if not isinstance(config, dict):
        raise ExportError(f"{where}: its config is not a mapping (a {type(config).__name__})")
    config = dict(config)
    for section in ("model", "training", "data"):
        config[section] = config.get(section) or {}
        if not isinstance(config[section], dict):
            raise ExportError(f"{where}: config.{section} is not a mapping ({quote(config[section])})")
    if history is None and (p.parent / "history.json").is_file():
        history = read_json(p.parent / "history.json", "history", MAX_JSON_BYTES)
    return config, state, _checked_history(history, where)


def _checked_history(history: object, where: str) -> list[dict[str, float]]:
    """A metrics history: a list of ``{name: number}``; anything else is an error naming it."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise ExportError(f"{where}: its history is not a list of metrics ({quote(history)})")
    for i, metrics in enumerate(history):
        if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
            raise ExportError(f"{where}: history[{i}] is not a mapping of metric names ({quote(metrics)})")
        for k, v in metrics.items():
            if k.startswith("acc/") and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ExportError(f"{where}: history[{i}][{quote(k)}] = {quote(v)} is not a number")
    return history


def _input_of(
    data: dict, in_chans: int, input_size: Sequence[int] | None, where: str
) -> tuple[str | None, tuple[int, int, int]]:
    """The data set name and the ``(C, H, W)`` input: given, else the data set's."""
    dataset = data.get("name")
    if dataset is not None and not isinstance(dataset, str):
        raise ExportError(f"{where}: config.data.name {quote(dataset)} is not a data set name")
    if input_size:
        size = tuple(input_size)
    else:
        image_size = data.get("image_size")
        if image_size is not None:
            _checked(count, image_size, f"{where}: config.data.image_size", low=1, high=MAX_IMAGE_SIDE)
        size = input_size_for(dataset, in_chans, image_size)
    if size is None:
        raise ExportError(f"{where}: the input size is unknown (data set {quote(dataset)}); give it as C H W")
    if len(size) != 3:
        raise ExportError(f"{where}: input size {quote(size)} is not C H W")
    for v in size:
        _checked(count, v, "input size", low=1, high=MAX_IMAGE_SIDE)
    if size[0] != in_chans:
        raise ExportError(f"{where}: input size {quote(size)} has {size[0]} channels; the model takes {in_chans}")
    return dataset, size  # type: ignore[return-value]


def _model_with_state(
    name: str, num_classes: int, wf: float, in_chans: int, state: dict, where: str, rounding: str = "paradis"
) -> ParaDiSModel:
    try:
        args = {"name": name, "num_classes": num_classes, "wide_factor": wf, "in_chans": in_chans, "rounding": rounding}
        model = model_from_args(args)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as err:
        first = first_line(err, 200)
        raise ExportError(f"{where} does not fit model {name!r}: {first}") from None
    return model.eval()
