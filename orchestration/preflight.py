"""Every check of a study before Ray starts: its trials (each one's run configuration validates, the
searched keys exist, a named switch set is defined: :func:`check_study`, which :func:`load_study` runs
on every study file it reads), the resources a trial asks for, the storage path, every trial's
switches in its model, that Tune can save an Optuna searcher and that the search's Optuna storage
opens. Each refusal is one :class:`~paradis.config.ConfigError` naming the file (``source``) and the key
path."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from orchestration.spec import StudySpec, read_study
from orchestration.trials import MAX_TRIALS, SWITCH_LIST_KEYS, Trial, run_config_for, trial_count, trials
from paradis.config import ConfigError, RunConfig


def load_study(path: str | os.PathLike, *, overrides: list[str] | None = None, smoke: bool = False) -> StudySpec:
    """A study file read (:func:`orchestration.spec.read_study`) and every trial of it checked
    (:func:`check_study`): what the command line, the report and the tests load."""
    spec = read_study(path, overrides=overrides, smoke=smoke)
    check_study(spec, str(path))
    return spec


def check_study(spec: StudySpec, source: str) -> list[Trial]:
    """Validate every trial the study can produce before anything runs; returns them
    (:func:`orchestration.trials.trials`). Raises :class:`ConfigError` naming the key path."""
    known = ", ".join(spec.switch_sets) or "none defined"
    if trial_count(spec) > MAX_TRIALS:
        raise ConfigError(f"{source}: search: {trial_count(spec)} trials, more than the limit of {MAX_TRIALS}")
    checks = [(f"search.space.{k}", k, p.values()) for k, p in spec.search.space.items()]
    checks += [(f"search.variants.{n}.{k}", k, [v]) for n, o in spec.search.variants.items() for k, v in o.items()]
    for where, key, values in checks:
        if not _key_exists(key):
            raise ConfigError(f"{source}: {where}: no such key in the run configuration")
        if key in SWITCH_LIST_KEYS:
            for v in values:
                if isinstance(v, str) and v not in spec.switch_sets:
                    raise ConfigError(f"{source}: {where}: {v!r} is not a switch set (switch_sets: {known})")
    checked = trials(spec, source)
    base = run_config_for(spec, {}, source)
    if spec.scheduler.kind == "asha" and base.evaluation.every != 1:
        raise ConfigError(f"{source}: evaluation.every: ASHA needs an evaluation every epoch (set it to 1)")
    return checked


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


def check_storage(spec, source: str) -> None:
    """``storage_path`` is a folder this user can write, or can be created as one."""
    path = spec.resolved_storage_path()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{source}: storage_path: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{source}: storage_path: {probe} is not writable by this user")


def check_switches(spec, source: str) -> None:
    """Every trial's trained and evaluated switches fit its model (whole channels in every layer),
    checked on models built on the meta device (no memory, no initialisation cost)."""
    import torch

    from paradis.data.registry import dataset_info
    from paradis.models.registry import create_model
    from paradis.tasks import model_arguments

    models: dict[tuple, object] = {}
    for trial in trials(spec, source):
        desc, cfg = trial.label, trial.config
        args = model_arguments(cfg, dataset_info(cfg.data.name))
        key = tuple(sorted(args.items()))
        if key not in models:
            with torch.device("meta"):
                models[key] = create_model(**args)
        named = [(f"training.switches[{i}]", s) for i, s in enumerate(cfg.training.switches)]
        named += [(f"evaluation.switches[{i}]", s) for i, s in enumerate(cfg.evaluation.switches or [])]
        if cfg.evaluation.target:
            named.append(("evaluation.target", cfg.evaluation.target))
        for where, s in named:
            try:
                models[key].resolve(s)
            except ValueError as err:
                raise ConfigError(f"{source}: trial {desc}: {where}: {err}") from None


def check_search(spec, source: str) -> None:
    """An Optuna search's searcher can be saved by Tune (it pickles it when the Tuner is created and at
    every experiment checkpoint): a release that breaks that is one line here, not a traceback after
    Ray started."""
    if spec.search.kind != "optuna":
        return
    import optuna

    from orchestration.samplers import picklable_check
    from orchestration.search import SEARCHES

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    _, searcher = SEARCHES["optuna"].setup(spec)
    problem = picklable_check(searcher)
    if problem:
        raise ConfigError(f"{source}: search: {problem}")


def check_optuna_storage(spec, source: str, tracking_uri: str) -> str | None:
    """The Optuna storage of an Optuna search (``search.storage``, ``PARADIS_OPTUNA_STORAGE`` or the
    default beside an sqlite MLflow store) opens, and is not the MLflow store's own database (Optuna would
    add its tables there); its URL, ``None`` for a grid search. Opening it creates Optuna's tables in a new
    database, as the first recorded trial would; a URL that cannot work is refused here, not after the
    trials trained."""
    from orchestration.search import optuna_storage
    from paradis.util import first_line

    url = optuna_storage(spec, tracking_uri)
    if url is None:
        return None
    where = "search.storage" if spec.search.storage else "PARADIS_OPTUNA_STORAGE"
    if not (spec.search.storage or os.environ.get("PARADIS_OPTUNA_STORAGE")):
        where = "the Optuna storage (beside the MLflow store)"
    if url.startswith("sqlite:") and not url.startswith("sqlite:////"):
        raise ConfigError(
            f"{source}: {where}: {url!r} is not an sqlite file at an absolute path "
            "(a relative one follows the working directory); give sqlite:////absolute/path/optuna.db"
        )
    if _database_of(url) == _database_of(tracking_uri):
        raise ConfigError(
            f"{source}: {where}: {url!r} is the MLflow tracking store's database ({tracking_uri}); "
            "give Optuna a database of its own"
        )
    import optuna

    try:
        optuna.storages.RDBStorage(url)
    except Exception as err:  # any driver's error: a bad scheme, no server, no such folder, no rights
        raise ConfigError(f"{source}: {where}: {url!r} cannot be opened: {first_line(err, 200)}") from None
    return url


def _database_of(url: str) -> tuple[str, ...]:
    """What names a database in an RDB URL, whatever the driver and credentials: the scheme without its
    driver, host, port and database (an sqlite file by its resolved path)."""
    from urllib.parse import urlsplit

    if url.startswith("sqlite:///"):
        return ("sqlite", str(Path(url[len("sqlite:///") :].split("?")[0]).resolve()))
    parts = urlsplit(url)
    return (parts.scheme.split("+")[0], (parts.hostname or "").lower(), str(parts.port or ""), parts.path.strip("/"))


__all__ = [
    "check_optuna_storage",
    "check_resources",
    "check_search",
    "check_storage",
    "check_study",
    "check_switches",
    "load_study",
    "local_gpu_count",
]
