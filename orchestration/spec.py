"""The study spec (``studies/*.yaml``): a run configuration (exactly the keys ``paradis train`` reads,
declared once in :class:`paradis.config.RunConfig`) plus a search over its keys, how to select
fronts, and how to run and track the trials. Parsed with ``yaml.safe_load`` semantics into models
that reject unknown keys; every error names the file and the key path.

A trial's run configuration is made from the spec's own data (the file after ``--smoke`` and
``--set``), by :func:`run_config_for`: the dry run, the checks before Ray starts and the trial itself
call that one function on the same data, so what passes the checks is what the trial runs."""

from __future__ import annotations

import copy
import itertools
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from orchestration.tracking.base import paradis_home
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
from paradis.methods import get_method
from paradis.switch import parse_switch
from paradis.util import first_line


class TrackingSpec(Strict):
    experiment: str | None = Field(None, description="MLflow experiment; default: the study name")
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite")


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


class Objective(Strict):
    metric: str = "acc/target"
    mode: Literal["min", "max"] = "max"


class SearchSpec(Strict):
    kind: Literal["grid", "optuna"] = "grid"
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named sets of key=value overrides, each a row of the study (crossed with a grid space)",
    )
    samples: int = Field(1, gt=0, le=100_000, description="grid: repeats of the grid; optuna: trials")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    sampler: Literal["tpe", "nsga2"] = "tpe"
    objectives: list[Objective] = Field(default_factory=lambda: [Objective()])
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


_SWITCH_LIST_KEYS = ("training.switches", "evaluation.switches", "evaluation.match_switches")


def set_key(data: dict, key: str, value: Any) -> None:
    """Set a dotted key; a mapping merges into the section already there (an override of one key of
    a section never resets its other keys)."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    last = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():
            set_key(node[last], k, v)
    else:
        node[last] = copy.deepcopy(value)


def seed_of(spec: StudySpec, variant: str | None, repeat: int) -> int:
    """The seed of repeat ``repeat`` of a configuration: its own seed plus the repeat index."""
    data = spec.run_section()
    for key, value in (spec.search.variants.get(variant, {}) if variant else {}).items():
        set_key(data, key, value)
    base = (data.get("training") or {}).get("seed", 0)
    return (base if isinstance(base, int) and not isinstance(base, bool) else 0) + repeat


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
        if key in _SWITCH_LIST_KEYS and isinstance(value, str) and value in spec.switch_sets:
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


def _key_exists(key: str) -> bool:
    model: type[BaseModel] = RunConfig
    for part in key.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return False
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        model = sub  # type: ignore[assignment]
        if model is None:
            return part == key.split(".")[-1]
    return True


MAX_TRIALS = 10_000  # a study of more trials is a typo in its grid


def trial_count(spec: StudySpec) -> int:
    """The trials a study runs, computed without expanding its grid."""
    if spec.search.kind != "grid":
        return spec.search.samples
    n = max(1, len(spec.search.variants)) * spec.search.samples * spec.repeats
    for p in spec.search.space.values():
        n *= len(p.values())
    return n


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """All combinations of variants and grid values (once; ``samples`` repeats them)."""
    if trial_count(spec) > MAX_TRIALS:
        raise ConfigError(f"search: {trial_count(spec)} trials, more than the limit of {MAX_TRIALS}")
    keys = list(spec.search.space)
    combos = list(itertools.product(*(spec.search.space[k].values() for k in keys)))
    points = [dict(zip(keys, combo)) for combo in combos] or [{}]
    if spec.search.variants:
        points = [{"variant": name, **p} for name in spec.search.variants for p in points]
    if spec.repeats > 1 or spec.repeat_from:
        first = spec.repeat_from
        points = [{**p, "repeat": k} for p in points for k in range(first, first + spec.repeats)]
    return points


def check_study(spec: StudySpec, source: str) -> list[dict[str, Any]]:
    """Validate every trial the study can produce before anything runs; returns the grid points
    (grid) or the values checked (optuna). Raises :class:`ConfigError` naming the key path."""
    known = ", ".join(spec.switch_sets) or "none defined"
    if trial_count(spec) > MAX_TRIALS:
        raise ConfigError(f"{source}: search: {trial_count(spec)} trials, more than the limit of {MAX_TRIALS}")
    checks = [(f"search.space.{k}", k, p.values()) for k, p in spec.search.space.items()]
    checks += [(f"search.variants.{n}.{k}", k, [v]) for n, o in spec.search.variants.items() for k, v in o.items()]
    for where, key, values in checks:
        if not _key_exists(key):
            raise ConfigError(f"{source}: {where}: no such key in the run configuration")
        if key in _SWITCH_LIST_KEYS:
            for v in values:
                if isinstance(v, str) and v not in spec.switch_sets:
                    raise ConfigError(f"{source}: {where}: {v!r} is not a switch set (switch_sets: {known})")
    if spec.search.kind == "grid":
        points = grid_points(spec)
        for params in points:
            run_config_for(spec, params, f"{source}: trial {_describe(params)}")
    else:
        points = []
        for key, p in spec.search.space.items():
            for v in p.values():
                run_config_for(spec, {key: v}, f"{source}: search.space.{key}={v!r}")
    base = run_config_for(spec, {}, source)
    if spec.scheduler.kind == "asha" and base.evaluation.every != 1:
        raise ConfigError(f"{source}: evaluation.every: ASHA needs an evaluation every epoch (set it to 1)")
    return points


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(base)"


def local_gpu_count() -> int:
    """GPUs of this machine, from the NVIDIA driver's /proc entries (no CUDA initialisation)."""
    root = Path("/proc/driver/nvidia/gpus")
    return len(list(root.iterdir())) if root.is_dir() else 0


def check_resources(spec: StudySpec, source: str, gpus_available: float, cpus_available: float | None = None) -> None:
    """A trial asking for more GPUs or CPUs than the cluster has would wait forever: refuse it."""
    res = spec.resources
    need = res.workers_per_trial * res.gpus_per_worker
    if need > gpus_available:
        raise ConfigError(
            f"{source}: resources.gpus_per_worker: a trial needs {need:g} GPU(s) "
            f"({res.workers_per_trial} worker(s) x {res.gpus_per_worker:g}), the cluster has {gpus_available:g}"
        )
    cpus = res.workers_per_trial * res.cpus_per_worker + (0.1 if res.workers_per_trial > 1 else 0)
    if cpus_available is not None and cpus > cpus_available:
        raise ConfigError(
            f"{source}: resources.cpus_per_worker: a trial needs {cpus:g} CPU(s) "
            f"({res.workers_per_trial} worker(s) x {res.cpus_per_worker:g}), the cluster has {cpus_available:g}"
        )


# --- loading ---------------------------------------------------------------------------------------
SMOKE_OVERRIDES = {
    "data.train_subset": 1024,
    "data.test_subset": 512,
    "training.epochs": 2,
    "training.batch_size": 64,
    "training.max_steps_per_epoch": 8,
    "evaluation.calibration_batches": 2,
    "device": "cpu",
}


def apply_smoke(data: dict) -> dict:
    """Scale a study down to a couple of minutes on a CPU: small subsets, 2 short epochs, few trials.
    Folder data sets that are not here (ImageNet, CIFAR) become synthetic images; DIV2K becomes the
    built-in photographs."""
    data = copy.deepcopy(data)
    sections = ("data", "training", "search", "scheduler", "resources", "evaluation", "front", "distributable")
    if any(k in data and not isinstance(data[k], dict) for k in sections):
        return data  # a section of the wrong type: validation names it, unchanged
    d = data.setdefault("data", {})
    root = d.get("root")
    missing = not (isinstance(root, str) and root and Path(root).is_dir())
    if d.get("name") in ("imagenet", "cifar10", "cifar100") and missing:
        data["data"] = {"name": "synthetic"}
    if d.get("name") == "div2k" and missing:
        data["data"] = {"name": "skimage-photos"}  # the built-in super-resolution photographs
    apply_overrides(data, [f"{k}={v}" for k, v in SMOKE_OVERRIDES.items()], "--smoke")
    sched = data["training"].get("schedule")
    if isinstance(sched, dict) and sched.get("milestones"):
        sched["milestones"] = [1]
    search = data.setdefault("search", {})
    samples = search.get("samples", 1)
    if search.get("kind") == "optuna" and isinstance(samples, int) and not isinstance(samples, bool):
        search["samples"] = min(samples, 3)
    elif search.get("kind") != "optuna":
        search["samples"] = 1
    sch = data.get("scheduler") or {}
    if sch.get("kind") == "asha":
        sch["grace_period"] = 1
    if data["data"].get("name") == "imagenet":
        data["data"]["image_size"] = min(data["data"].get("image_size", 224), 64)
    data["data"].pop("num_workers", None)  # loader processes cost more than they give on a few batches
    res = data.setdefault("resources", {})
    if res.get("gpus_per_worker"):  # a GPU study tried on a CPU: one worker of one core
        res.update(workers_per_trial=1, cpus_per_worker=1)
    res["gpus_per_worker"] = 0  # a CPU study keeps what it asks for (and is refused where it cannot run)
    if isinstance(data.get("front"), dict):
        data["front"].update(validation=256, evaluations=4)
    if isinstance(data.get("distributable"), dict):
        data["distributable"]["trials"] = 3
    return data


def load_study(path: str | os.PathLike, *, overrides: list[str] | None = None, smoke: bool = False) -> StudySpec:
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
    spec = study_from_data(data, source)
    check_study(spec, source)
    return spec
