"""A study's results as a small committed file (``docs/results/<study>.json``): every trial's
configuration, seed, per-switch values, epochs trained and status, the learning-curve verdict and the
study's wall time. The report can be rebuilt from these files alone, so that studies run at different
times or on different machines still make one report; files of one study are pooled only when their
configurations (the resolved spec, less the seeds) are the same."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestration.report.curves import parse_convergence, teacher_key
from orchestration.report.rows import SwitchRow
from orchestration.report.studies import SCALES, StudyResult
from orchestration.report.study import TrialRecord
from orchestration.trials import seed_of
from paradis.config import ConfigError

FORMAT = "paradis-study-results/1"
FILE_LIMIT = 20_000_000  # bytes
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedTrial(_Strict):
    name: str = Field(min_length=1, max_length=500)
    label: str = Field(max_length=500)
    params: dict[str, Scalar]
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    status: Literal["TERMINATED", "FAILED", "ERROR", "KILLED", "RUNNING", "SCHEDULED"]
    epochs: int | None = Field(None, ge=0, le=1_000_000)
    rows: list[SwitchRow]
    curve: list[dict[str, float]] = []  # the teacher's test measure and training loss by epoch

    @field_validator("params")
    @classmethod
    def _repeat(cls, v: dict[str, Scalar]) -> dict[str, Scalar]:
        repeat = v.get("repeat", 0)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 0 <= repeat <= 1_000_000:
            raise ValueError(f"repeat: {str(repeat)[:30]!r} is not a repeat index")
        return v

    @field_validator("curve")
    @classmethod
    def _finite(cls, v: list[dict[str, float]]) -> list[dict[str, float]]:
        if any(not math.isfinite(x) for row in v for x in row.values()):
            raise ValueError("a learning-curve value is not finite")
        return v


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Optimizer(_Loose):
    lr: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False)
    weight_decay: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False)
    decay: str | None = Field(None, max_length=50)


class _Training(_Loose):
    epochs: int | None = Field(None, ge=1, le=1_000_000)
    batch_size: int | None = Field(None, ge=1, le=1_000_000)
    optimizer: _Optimizer | None = None
    schedule: dict[str, Any] | None = None


class _Data(_Loose):
    name: str | None = Field(None, max_length=100)
    train_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)


class _Configuration(_Loose):
    """What the report reads of a study's resolved spec (its scale); the rest is kept as it is."""

    model: dict[str, Any] | None = None
    data: _Data | None = None
    training: _Training | None = None
    search: dict[str, Any] | None = None


class ExportedStudy(_Strict):
    format: Literal["paradis-study-results/1"]
    study: str = Field(max_length=100)  # the role: a reduced study's file stem
    name: str = Field(max_length=200)
    path: str = Field(max_length=300)
    experiment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,199}$")
    configuration: dict[str, Any] | None
    run_ids: list[str] = Field(max_length=1000)
    wall_s: float | None = Field(None, ge=0, le=1e8, allow_inf_nan=False)
    convergence: list[dict[str, Any]] = []
    trials: list[ExportedTrial]

    @field_validator("configuration")
    @classmethod
    def _configuration(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            _Configuration.model_validate(v)  # errors name the key path; the data is kept as written
        return v

    @field_validator("run_ids")
    @classmethod
    def _run_ids(cls, v: list[str]) -> list[str]:
        for run in v:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", run):
                raise ValueError(f"{run[:40]!r} is not a run id")
        return v


def exported(result: StudyResult) -> dict[str, Any]:
    """The file's content for a study result read from a tracking store."""
    trials = []
    for r in result.records:
        variant = r.params.get("variant")
        repeat = r.params.get("repeat", 0)
        seed = seed_of(result.spec, variant, int(repeat)) if result.spec is not None else None
        key = teacher_key(r.curves)
        curve = [{k: row[k] for k in ("epoch", *(key or ())) if k in row} for row in r.curves] if key else []
        epochs = max((int(row["epoch"]) for row in r.curves), default=None)
        trials.append(
            {
                "name": r.name,
                "label": r.label,
                "params": r.params,
                "seed": seed,
                "status": r.status,
                "epochs": epochs,
                "rows": r.rows,
                "curve": curve,
            }
        )
    data = {
        "format": FORMAT,
        "study": result.key,
        "name": result.spec.name if result.spec is not None else result.key,
        "path": f"studies/{result.path or result.key}.yaml",
        "experiment": result.experiment,
        "configuration": result.configuration,
        "run_ids": result.run_ids or ([result.run_id] if result.run_id else []),
        "wall_s": result.wall_s,
        "convergence": result.convergence,
        "trials": trials,
    }
    ExportedStudy.model_validate(data)  # what is written can be read back
    return data


def write_exports(results: Iterable[StudyResult], folder: Path) -> list[Path]:
    """``<folder>/<study>.json`` for every study that ran; the paths written."""
    written = []
    for result in results:
        if result.run_id is None:
            continue
        path = folder / f"{result.key}.json"
        path.write_text(json.dumps(exported(result), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def read_export(path: Path) -> ExportedStudy:
    if path.is_symlink() or not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    if path.stat().st_size > FILE_LIMIT:
        raise ConfigError(f"{path}: over {FILE_LIMIT} bytes")
    try:
        return ExportedStudy.model_validate(json.loads(path.read_text()))
    except RecursionError:
        raise ConfigError(f"{path}: not a study-results file (nested too deeply)") from None
    except (ValueError, ValidationError) as err:
        first = " ".join(str(err).split())[:300]
        raise ConfigError(f"{path}: not a study-results file ({first})") from None


def _differing(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    a, b = a or {}, b or {}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def read_exports(folder: Path, scale: str = "reduced") -> dict[str, StudyResult]:
    """Every ``*.json`` of ``folder`` as study results, pooled by study; a study's files whose
    configurations differ are refused, naming the keys that differ."""
    if not folder.is_dir():
        raise ConfigError(f"--from {str(folder)!r}: not a folder")
    out: dict[str, StudyResult] = {}
    origin: dict[int, str] = {}  # a record's file
    for path in sorted(folder.glob("*.json")):
        data = read_export(path)
        if data.study not in SCALES[scale]:
            raise ConfigError(f"{path}: study {data.study!r} is not one of the report's ({', '.join(SCALES[scale])})")
        result = out.get(data.study)
        if result is None:
            result = out[data.study] = StudyResult(data.study, None, path=SCALES[scale][data.study])
            result.configuration = data.configuration
            result.experiment_name = data.experiment
        elif _differing(result.configuration, data.configuration):
            keys = ", ".join(_differing(result.configuration, data.configuration)[:10])
            raise ConfigError(f"{path}: another configuration of study {data.study!r} than the files before ({keys})")
        result.run_ids += [r for r in data.run_ids if r not in result.run_ids]
        result.run_id = result.run_ids[0] if result.run_ids else f"file:{path.name}"
        result.wall_s = (result.wall_s or 0.0) + (data.wall_s or 0.0) or None
        result.convergence += [c for c in (parse_convergence(c) for c in data.convergence) if c is not None]
        for t in data.trials:
            rows = [row.model_dump(exclude_none=False) for row in t.rows]
            record = TrialRecord(t.name, t.name, t.label, dict(t.params), rows, t.status, curves=list(t.curve))
            stopped = _stopped_early(t, data.configuration)
            if stopped:  # never averaged as a seed that trained fully
                record.status, record.error = "STOPPED", stopped
            result.records.append(record)
            origin[id(record)] = path.name
    for study, result in out.items():
        result.records.sort(key=lambda r: r.name)
        _each_seed_once(study, result.records, origin)
    return out


def _stopped_early(trial: ExportedTrial, configuration: dict[str, Any] | None) -> str | None:
    """Why a trial marked TERMINATED did not train its configuration's epochs (``None`` if it did)."""
    if trial.status != "TERMINATED" or trial.epochs is None or not configuration:
        return None
    training = configuration.get("training") if isinstance(configuration.get("training"), dict) else {}
    planned = training.get("epochs")
    variants = (configuration.get("search") or {}).get("variants") or {}
    variant = variants.get(trial.params.get("variant")) if isinstance(variants, dict) else None
    if isinstance(variant, dict):
        nested = variant.get("training") if isinstance(variant.get("training"), dict) else {}
        planned = variant.get("training.epochs", nested.get("epochs", planned))
    if isinstance(planned, int) and trial.epochs < planned:
        return f"stopped after {trial.epochs} of {planned} epochs"
    return None


def _each_seed_once(study: str, records: list[TrialRecord], origin: dict[int, str]) -> None:
    """Two finished trials of one configuration and repeat would count one seed twice: refused."""
    seen: dict[tuple[str, Any], TrialRecord] = {}
    for r in records:
        if r.status != "TERMINATED":
            continue
        key = (repr(sorted(((k, v) for k, v in r.params.items() if k != "repeat"), key=str)), r.params.get("repeat", 0))
        if key in seen:
            first = seen[key]
            raise ConfigError(
                f"study {study!r}: trials {first.name!r} ({origin.get(id(first))}) and {r.name!r} "
                f"({origin.get(id(r))}) are the same configuration and repeat {key[1]}: one seed counted twice"
            )
        seen[key] = r
