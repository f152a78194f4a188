"""The trials of a study: how a spec (:mod:`orchestration.spec`) expands into Ray Tune trials and the
run configuration each one trains with.

A trial's run configuration is made from the spec's own data (the file after ``--smoke`` and
``--set``) by :func:`run_config_for`, and every trial a study can run is listed by :func:`trials`
(a grid's points come from :func:`grid_axes`, from which the runner's Tune grid is built too): the dry
run, the checks before Ray starts (:mod:`orchestration.preflight`) and the trial itself use these on
the same data, so what passes the checks is what the trial runs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from orchestration.spec import StudySpec
from paradis.config import ConfigError, RunConfig, format_validation_error, set_key
from paradis.methods import get_method
from paradis.util import first_line

# The run configuration's keys whose value may name one of a spec's ``switch_sets``.
SWITCH_LIST_KEYS = ("training.switches", "evaluation.switches", "evaluation.match_switches")


def seed_of(spec: StudySpec, variant: str | None, repeat: int) -> int:
    """The seed of repeat ``repeat`` of a configuration: its own seed plus the repeat index."""
    data = spec.run_section()
    for key, value in (spec.search.variants.get(variant, {}) if variant else {}).items():
        set_key(data, key, value)
    base = (data.get("training") or {}).get("seed", 0)
    try:  # as the run configuration reads it (3.0 and "3" are 3), so repeat 0 and the others agree
        base = TypeAdapter(int).validate_python(base)
    except ValidationError:
        base = 0  # the spec's validation refuses it
    return base + repeat


def configuration_name(params: dict[str, Any]) -> str:
    """What a trial's configuration is called wherever a study shows it: its variant, else its searched
    values by their last key part (``switches=eight, lr=0.1``), the repeat left out; ``base`` when
    nothing was searched."""
    if params.get("variant"):
        return str(params["variant"])
    shown = [f"{k.rsplit('.', 1)[-1]}={_plain(v)}" for k, v in params.items() if k not in ("repeat", "variant")]
    return ", ".join(shown) or "base"


def trial_name(params: dict[str, Any], trial_id: str) -> str:
    """A trial's run name: its configuration, its repeat and Ray Tune's trial id."""
    repeat = params.get("repeat")
    return f"{configuration_name(params)}{'' if repeat is None else f'-seed{repeat}'}_{trial_id}"


def _plain(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def trial_params(spec: StudySpec, params: dict[str, Any]) -> list[tuple[str, Any]]:
    """A trial's dotted keys and values: its variant's, then its searched values; a value naming one
    of the spec's ``switch_sets`` stands for that list of switches."""
    params = dict(params)
    variant = params.pop("variant", None)
    repeat = params.pop("repeat", None)
    items = list(spec.search.variants[variant].items()) if variant is not None else []
    items += list(params.items())
    if repeat:  # the seed enters data order, initialisation and augmentation
        items.append(("training.seed", seed_of(spec, variant, repeat)))
    out = []
    for key, value in items:
        if key in SWITCH_LIST_KEYS and isinstance(value, str) and value in spec.switch_sets:
            value = spec.switch_sets[value]
        out.append((key, value))
    return out


def run_config_for(spec: StudySpec, params: dict[str, Any], source: str = "trial") -> RunConfig:
    """The run configuration of one trial: the spec's run section with its variant and searched
    values set (sections merge), and the front's validation images held out when the trial's method
    has a front."""
    data = spec.run_section()
    for key, value in trial_params(spec, params):
        set_key(data, key, value)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(first_line(format_validation_error(err, source), None)) from None
    if spec.front is not None and get_method(cfg.training.method).front is not None and not cfg.data.holdout:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"holdout": spec.front.validation})})
    return cfg


MAX_TRIALS = 10_000  # a study of more trials is a typo in its grid


def grid_axes(spec: StudySpec) -> dict[str, list[Any]]:
    """The values a grid study crosses, in order: its variants (``variant``), each searched key's grid,
    and the repeat indices (``repeat``, from ``repeat_from``) when there are several or they start
    later. :func:`grid_points` crosses them; the runner gives them to Ray Tune as its grid."""
    axes: dict[str, list[Any]] = {}
    if spec.search.variants:
        axes["variant"] = list(spec.search.variants)
    axes.update({key: p.values() for key, p in spec.search.space.items()})
    if spec.repeats > 1 or spec.repeat_from:
        axes["repeat"] = list(range(spec.repeat_from, spec.repeat_from + spec.repeats))
    return axes


def trial_count(spec: StudySpec) -> int:
    """The trials a study runs, computed without expanding its grid."""
    if spec.search.kind != "grid":
        return spec.search.samples
    return spec.search.samples * math.prod(len(values) for values in grid_axes(spec).values())


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """All combinations of variants, grid values and repeats (once; ``samples`` repeats them)."""
    if trial_count(spec) > MAX_TRIALS:
        raise ConfigError(f"search: {trial_count(spec)} trials, more than the limit of {MAX_TRIALS}")
    axes = grid_axes(spec)
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def params_label(params: dict[str, Any]) -> str:
    """How a message names a grid point: ``variant=b, repeat=0``, or ``(base)``."""
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(base)"


@dataclass(frozen=True)
class Trial:
    """One trial a study can run: how messages name it, its parameters and its run configuration."""

    label: str
    params: dict[str, Any]
    config: RunConfig


def trials(spec: StudySpec, source: str = "trial") -> list[Trial]:
    """Every trial of a grid study (its points), or what an Optuna search can draw: its base
    configuration and each searched value alone (a range by its bounds). A configuration that does not
    validate is a :class:`ConfigError` naming ``source`` and the trial. The dry run lists these, the
    checks before Ray validate them."""
    if spec.search.kind == "grid":
        out = []
        for p in grid_points(spec):
            label = params_label(p)
            out.append(Trial(label, p, run_config_for(spec, p, f"{source}: trial {label}")))
        return out
    out = [Trial("(base)", {}, run_config_for(spec, {}, source))]
    for key, p in spec.search.space.items():
        for v in p.values():
            label = f"search.space.{key}={v!r}"
            out.append(Trial(label, {key: v}, run_config_for(spec, {key: v}, f"{source}: {label}")))
    return out
