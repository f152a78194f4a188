"""The study spec (``studies/*.yaml``): a run configuration (exactly the keys ``paradis train`` reads,
declared once in :class:`paradis.config.RunConfig`) plus a search over its keys, how to select
fronts, and how to run and track the trials. Parsed with ``yaml.safe_load`` semantics into models
that reject unknown keys; every error names the file and the key path.

This module is the schema and the reading of a study file (:func:`read_study`); the trials a spec
expands into are :mod:`orchestration.trials`', and the checks of every trial before Ray starts (and
:func:`orchestration.preflight.load_study`, a study file read and checked) are
:mod:`orchestration.preflight`'s."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from orchestration.seeding import check_seeds
from orchestration.smoke import apply_smoke
from paradis.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    Strict,
    apply_overrides,
    format_validation_error,
    read_yaml,
)
from paradis.switch import parse_switch
from paradis.util import first_line, parse_duration


def paradis_home() -> Path:
    """Where studies keep their default MLflow database and Ray results: an absolute path, so that a
    ``ray job submit --working-dir`` copy never scatters runs into a temporary folder."""
    return Path(os.environ.get("PARADIS_HOME") or Path.home() / "paradis").expanduser().resolve()


EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def check_experiment_name(v: str, where: str = "tracking.experiment") -> str:
    """An MLflow experiment name that is no path: MLflow's stores derive folders from it."""
    if not EXPERIMENT_NAME.fullmatch(v) or ".." in v:
        raise ValueError(f"{where} {v[:200]!r} may hold letters, digits, '_', '.' and '-' only (no path, no '..')")
    return v


class TrackingSpec(Strict):
    experiment: str | None = Field(None, description="MLflow experiment; default: the study name")
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite")
    checkpoints: Literal["none", "final", "all"] = Field(
        "final",
        description="what of a trial's checkpoint reaches MLflow: none; final (the trained model alone, "
        "checkpoint/model.pt: weights and BN statistics, no optimizer state); all (also the full resumable "
        "checkpoint, checkpoint/checkpoint.pt). Ray keeps its own copy for resuming either way",
    )

    @field_validator("experiment")
    @classmethod
    def _no_path(cls, v: str | None) -> str | None:
        return v if v is None else check_experiment_name(v, "experiment")


class ParamSpec(Strict):
    """One searched key: exactly one of ``grid``, ``choice``, ``uniform``, ``loguniform``, ``int``."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ParamSpec:
        given = [k for k in ("grid", "choice", "uniform", "loguniform", "int") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform, int (got {given or 'none'})")
        for k in ("grid", "choice"):
            v = getattr(self, k)
            if v is not None and not v:
                raise ValueError(f"{k} is empty")
        for k in ("uniform", "loguniform", "int"):
            v = getattr(self, k)
            if v is not None and not v[0] < v[1]:
                raise ValueError(f"{k} bounds {list(v)} must be increasing")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform bounds {list(self.loguniform)} must be positive")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform", "int") if getattr(self, k) is not None)

    def values(self) -> list[Any]:
        """The values a grid visits, or the values to check before running (bounds of ranges)."""
        v = getattr(self, self.kind)
        return list(v)


class SearchObjective(Strict):
    """What a search optimizes: a reported metric and its direction (not a task's training
    objective, :class:`paradis.tasks.Objective`)."""

    metric: str = "acc/target"
    mode: Literal["min", "max"] = "max"


class SearchSpec(Strict):
    kind: Literal["grid", "optuna"] = "grid"
    time_budget: str | float | None = Field(
        None,
        description="a duration (90s, 30m, 2h, or seconds): Ray Tune stops the study's trials then "
        "(time_budget_s); the study table says which trials the budget stopped, and at which epoch",
    )
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named sets of key=value overrides, each a row of the study (crossed with a grid space)",
    )
    samples: int = Field(1, gt=0, le=100_000, description="grid: repeats of the grid; optuna: trials")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    objectives: list[SearchObjective] = Field(default_factory=lambda: [SearchObjective()])
    storage: str | None = Field(
        None,
        description="Optuna storage (an RDB URL) for an Optuna search; default PARADIS_OPTUNA_STORAGE, else "
        "an sqlite file beside an sqlite MLflow store",
    )
    reference: list[float] | None = Field(
        None,
        description="multi-objective: the hypervolume's reference point, one value per objective "
        "(default: the worst value of each objective among the finished trials)",
    )

    @field_validator("time_budget")
    @classmethod
    def _duration(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_duration(v, "time_budget")
        return v

    @property
    def time_budget_s(self) -> float | None:
        return None if self.time_budget is None else parse_duration(self.time_budget, "time_budget")

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        if not self.objectives:
            raise ValueError("objectives is empty")
        if self.kind == "grid":
            for key, p in self.space.items():
                if p.kind not in ("grid", "choice"):
                    raise ValueError(f"space.{key}: a grid search takes grid or choice lists, not {p.kind}")
        if self.kind == "optuna" and self.variants:
            raise ValueError("variants belong to grid searches; an optuna search takes a space")
        if "variant" in self.space:
            raise ValueError("space.variant: the name 'variant' is reserved for variants")
        if self.kind == "optuna" and self.sampler == "nsga2" and len(self.objectives) < 2:
            raise ValueError("sampler nsga2 is for several objectives; give at least two")
        if self.reference is not None and len(self.reference) != len(self.objectives):
            raise ValueError(f"reference {self.reference} needs one value per objective ({len(self.objectives)})")
        return self


class SchedulerSpec(Strict):
    kind: Literal["none", "asha"] = "none"
    metric: str = "acc/target"
    mode: Literal["min", "max"] = "max"
    grace_period: int = Field(1, gt=0, le=100_000)
    reduction_factor: float = Field(2.0, gt=1, le=100)


class ResourcesSpec(Strict):
    workers_per_trial: int = Field(1, gt=0, le=4096)
    cpus_per_worker: float = Field(1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0, le=64)
    max_concurrent_trials: int | None = Field(None, gt=0, le=100_000)
    # when no trial waits to start, running one-worker trials take the CPUs no trial holds (reserved in
    # Ray's books first: never more threads than cores); a trial given more threads may differ from one
    # that was not in the last bits (oneDNN splits its sums by thread)
    share_free_cores: bool = Field(
        True, description="once no trial waits, running one-worker trials take the CPUs no trial holds"
    )
    max_threads_per_trial: int | None = Field(
        None, gt=0, le=1024, description="the most threads a trial takes with shared cores (default: no cap)"
    )


class FailureSpec(Strict):
    max_failures: int = Field(2, ge=-1, le=1000, description="retries of a failed trial (-1: forever)")


class ReferenceSpec(Strict):
    """The reference point of a front's hypervolume: a cost (a fraction of the ``[1.0]`` network's
    multiply-adds) and a top-1 accuracy; only what costs less and scores more counts."""

    macs_fraction: float = Field(1.0, gt=0, le=10)
    top1: float = Field(0.5, ge=0, lt=1)


class FrontSpec(Strict):
    """Front selection at the end of each trial whose method has a front (us, slimmable, pareco,
    twostage): the method's configurations are measured on ``validation`` training images held out
    of training, the non-dominated ones on the test split."""

    validation: int = Field(1000, gt=0, le=10_000_000, description="images held out of the training split")
    evaluations: int = Field(24, gt=0, le=100_000, description="configurations each method may evaluate")
    sampler: Literal["nsga2", "tpe"] = Field("nsga2", description="TwoStage's search after training")
    population_size: int = Field(8, ge=2, le=10_000)
    history_last: int | None = Field(None, gt=0, description="PareCO: the latest observations to rank")
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class DistributableSpec(Strict):
    """The best per-stage ``k``-device switch under per-device budgets, searched at the end of the
    trial of variant ``variant`` (a PareCO or TwoStage method trained with ``training.pareco.devices: k``)."""

    variant: str
    budgets: list[float] = Field(description="per-device multiply-adds, as fractions of the [1.0] network's")
    trials: int = Field(16, gt=0, le=100_000)
    uniform: list[str] = Field(default_factory=list, description="uniform switches evaluated beside the found ones")

    @field_validator("budgets")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < b <= 10 for b in v):
            raise ValueError(f"budgets {v} must be a non-empty list of fractions in (0, 10]")
        return v

    @field_validator("uniform", mode="before")
    @classmethod
    def _switches(cls, v: Any) -> Any:
        return [str(parse_switch(s)) for s in v] if isinstance(v, list) else v


# The keys of a spec that are not its run configuration.
STUDY_KEYS = (
    "name",
    "description",
    "tracking",
    "switch_sets",
    "search",
    "scheduler",
    "resources",
    "failure",
    "storage_path",
    "front",
    "distributable",
    "repeats",
    "repeat_from",
    "compare",
)


class StudySpec(RunConfig):
    """A run configuration and the study around it. A study names its ``model`` and ``data`` (it is
    a record of what was trained); everything else may default."""

    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    model: ModelConfig
    data: DataConfig
    switch_sets: dict[str, list[str]] = Field(
        default_factory=dict, description="named switch lists that a search may choose among"
    )
    search: SearchSpec = Field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    failure: FailureSpec = Field(default_factory=FailureSpec)
    storage_path: str | None = Field(None, description="Ray results and checkpoints; default ~/paradis/ray_results")
    front: FrontSpec | None = Field(None, description="select an accuracy-cost front at the end of each trial")
    distributable: DistributableSpec | None = None
    repeats: int = Field(1, ge=1, le=100, description="seeds each trial configuration is trained with")
    repeat_from: int = Field(
        0,
        ge=0,
        le=10_000,
        description="the first repeat index: more seeds for a study already run (repeats 3, 4 with "
        "repeats: 2, repeat_from: 3); the report pairs them with the earlier run's",
    )
    compare: str | None = Field(
        None, description="a variant: the paired difference of every other variant to it, per switch, over seeds"
    )
    _data: dict = PrivateAttr(default_factory=dict)  # what the spec was validated from

    @model_validator(mode="before")
    @classmethod
    def _names_model_and_data(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("model", "data"):
                if isinstance(data.get(key), dict) and "name" not in data[key]:
                    raise ValueError(f"{key}.name: a study names the {key} it trains (required key is missing)")
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"name {v!r} may hold letters, digits, '_', '.' and '-' only")
        return v

    @field_validator("switch_sets", mode="before")
    @classmethod
    def _parse_sets(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for name, switches in v.items():
            if not isinstance(switches, list) or not switches:
                raise ValueError(f"switch set {name!r} must be a non-empty list of switches")
            out[name] = [str(parse_switch(s)) for s in switches]
        return out

    @model_validator(mode="after")
    def _fronts(self) -> StudySpec:
        d = self.distributable
        if d is not None and d.variant not in self.search.variants:
            raise ValueError(f"distributable.variant: {d.variant!r} is not one of search.variants")
        if d is not None and self.front is None:
            raise ValueError("distributable: the distributable search runs in the front step; add a front section")
        if self.front is not None and self.resources.workers_per_trial > 1:
            raise ValueError("front: front selection runs in one-worker trials (resources.workers_per_trial: 1)")
        if self.compare is not None and self.compare not in self.search.variants:
            raise ValueError(f"compare: {self.compare!r} is not one of search.variants")
        if self.repeat_from and self.search.kind != "grid":
            raise ValueError("repeat_from: extra seeds are for a grid study (an Optuna trial draws its own)")
        if self.repeats > 1 and self.search.kind == "optuna" and self.resources.workers_per_trial > 1:
            raise ValueError("repeats: an Optuna trial trains its seeds in one process (workers_per_trial: 1)")
        return self

    @model_validator(mode="after")
    def _seeds_counted_once(self) -> StudySpec:
        check_seeds(self)
        return self

    # --- derived ---------------------------------------------------------------------------------
    @property
    def data_dict(self) -> dict:
        """The data the spec was validated from (after ``--smoke`` and ``--set``): what trials get."""
        return copy.deepcopy(self._data)

    def run_section(self) -> dict:
        """The run configuration's part of the spec's own data, the trials' threads defaulting to
        their CPUs."""
        run = {k: copy.deepcopy(v) for k, v in self._data.items() if k not in STUDY_KEYS}
        run.setdefault("threads", max(1, int(self.resources.cpus_per_worker)))
        return run

    def resolved_storage_path(self) -> Path:
        if self.storage_path:
            return Path(self.storage_path).expanduser().resolve()
        return paradis_home() / "ray_results"

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name


def study_from_data(data: dict, source: str) -> StudySpec:
    """Validate a spec's data (one line naming the key on error) and keep the data with it."""
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(first_line(format_validation_error(err, source), None)) from None
    spec._data = copy.deepcopy(data)
    return spec


# --- loading ---------------------------------------------------------------------------------------
def read_study(path: str | os.PathLike, *, overrides: list[str] | None = None, smoke: bool = False) -> StudySpec:
    """A study file as a validated spec: read (``--smoke`` and ``--set`` applied), a relative data
    folder pinned, the schema checked. Its trials are not checked here:
    :func:`orchestration.preflight.load_study` reads and checks them."""
    source = str(path)
    data = read_yaml(path)
    if smoke:
        # --smoke sees the user's settings (a data.root set on the command line is not replaced by
        # synthetic images), and what the user sets wins over --smoke
        data = apply_smoke(apply_overrides(data, overrides or []))
    data = apply_overrides(data, overrides or [])
    root = (data.get("data") or {}).get("root") if isinstance(data.get("data"), dict) else None
    if isinstance(root, str) and root and not Path(root).expanduser().is_absolute():
        # trials run in their own working directories: pin the folder the user meant
        data["data"]["root"] = str(Path(root).expanduser().resolve())
    return study_from_data(data, source)
