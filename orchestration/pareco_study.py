"""A PareCO study (``studies/pareco.yaml``): methods trained one after another on the same data, each
network's accuracy-cost front selected on a validation split held out of the training set, measured on
the test split, and compared in MLflow (one plot of the fronts, the table of front points with their
per-stage widths, the hypervolume of each front against a stated reference point).

``python orchestration/run_study.py studies/pareco.yaml`` runs it (the spec says ``kind: pareco``).
The methods run in the driver process, in sequence: each front search needs the trained network in
memory, and a study this size is bound by one process's cores anyway.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from orchestration.pareco import (
    FrontPoint,
    constrained_search,
    front_search,
    hypervolume,
    non_dominated,
    proposer_for,
)
from orchestration.spec import TrackingSpec
from paradis.bn import calibrate_bn
from paradis.config import (
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    RunConfig,
    Strict,
    TrainingConfig,
    apply_overrides,
    format_validation_error,
    read_yaml,
)
from paradis.costs import profile
from paradis.data import Splits, TensorSplit, make_loader
from paradis.evaluation import accuracy, evaluate_switches
from paradis.switch import Switch, parse_switch
from paradis.trainer import load_splits, run_training
from paradis.training import MethodPlanner, StageSpace


# --- spec ----------------------------------------------------------------------------------------------
class ReferenceSpec(Strict):
    """The hypervolume's reference point: a cost (a fraction of the [1.0] network's multiply-adds)
    and a top-1 accuracy; only what costs less and scores more counts."""

    macs_fraction: float = Field(1.0, gt=0, le=10)
    top1: float = Field(0.5, ge=0, lt=1)


class FrontSpec(Strict):
    validation: int = Field(1000, gt=0, le=10_000_000, description="images held out of the training split")
    evaluations: int = Field(24, gt=0, le=100_000, description="configurations each method may evaluate")
    sampler: Literal["nsga2", "tpe"] = "nsga2"
    population_size: int = Field(8, ge=2, le=10_000)
    history_last: int | None = Field(None, gt=0, description="PareCO: the latest observations to rank")
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    proposer_population: int = Field(16, ge=2, le=10_000, description="PareCO proposer's NSGA-II population")
    proposer_sampler: Literal["nsga2", "tpe"] = "nsga2"


class DistributableSpec(Strict):
    """The best per-stage ``k``-device switch under per-device budgets, searched in the network of
    ``method`` (a PareCO or TwoStage method trained with ``training.pareco.devices: k``)."""

    method: str
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


class ParecoStudySpec(Strict):
    kind: Literal["pareco"]
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, gt=0, le=1024)
    methods: dict[str, dict[str, Any]] = Field(description="name -> overrides (dotted keys) of the base run")
    front: FrontSpec = Field(default_factory=FrontSpec)
    distributable: DistributableSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParecoStudySpec:
        if not self.methods:
            raise ValueError("methods is empty: name at least one method")
        if self.distributable is not None and self.distributable.method not in self.methods:
            raise ValueError(f"distributable.method {self.distributable.method!r} is not one of the methods")
        return self

    def run_config(self, name: str) -> RunConfig:
        data = {
            "model": self.model.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json"),
            "training": self.training.model_dump(
                mode="json", exclude=None if "distillation" in self.training.model_fields_set else {"distillation"}
            ),
            "evaluation": self.evaluation.model_dump(mode="json"),
            "device": self.device,
            "threads": self.threads,
        }
        apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in self.methods[name].items()], f"methods.{name}")
        cfg = RunConfig.model_validate(data)
        if cfg.training.method not in ("pareco", "twostage", "us", "slimmable"):
            raise ValueError(
                f"methods.{name}: method {cfg.training.method} has no front (pareco, twostage, us, slimmable)"
            )
        return cfg

    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name


SMOKE = {
    "data.train_subset": 768,
    "data.test_subset": 256,
    "training.epochs": 1,
    "training.batch_size": 64,
    "training.max_steps_per_epoch": 6,
    "evaluation.calibration_batches": 2,
    "front.validation": 256,
    "front.evaluations": 4,
    "device": "cpu",
}


def load_pareco_study(path: str, overrides: list[str] | None = None, *, smoke: bool = False) -> ParecoStudySpec:
    data = read_yaml(path)
    if smoke:
        apply_overrides(data, [f"{k}={v}" for k, v in SMOKE.items()], "--smoke")
        if isinstance(data.get("distributable"), dict):
            data["distributable"]["trials"] = 3
    apply_overrides(data, overrides or [])
    try:
        spec = ParecoStudySpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path).splitlines()[0]) from None
    for name in spec.methods:
        try:
            spec.run_config(name)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"{path}: methods.{name}").splitlines()[0]) from None
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from None
    return spec


# --- data ----------------------------------------------------------------------------------------------
def holdout(split, n_train: int | None, n_val: int, seed: int):
    """Disjoint training and validation parts of ``split`` from one fixed random permutation."""
    total = len(split)
    n_train = total - n_val if n_train is None else min(n_train, total - n_val)
    if n_train <= 0:
        raise ConfigError(f"front.validation {n_val} leaves no training images of {total}")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    parts = perm[:n_train].sort().values, perm[n_train : n_train + n_val].sort().values
    if isinstance(split, TensorSplit):
        train, val = (
            TensorSplit(split.images[i], split.labels[i], split.mean, split.std, split.augment) for i in parts
        )
        return train, TensorSplit(val.images, val.labels, val.mean, val.std, augment=False)
    return tuple(torch.utils.data.Subset(split, i.tolist()) for i in parts)


# --- one method ----------------------------------------------------------------------------------------
@dataclass
class MethodOutcome:
    name: str
    label: str
    method: str
    seconds: float
    train_seconds: float
    front: list[FrontPoint]
    evaluated: list[FrontPoint]
    hypervolume: float
    distributable: list[dict] = field(default_factory=list)


class Evaluator:
    """Calibrated validation and test accuracy and cached costs of configurations of one network."""

    def __init__(self, model, cfg: RunConfig, train, val, test, info, device):
        self.model, self.input_size, self.device = model, tuple(info.input_size), device
        self.num_classes = info.num_classes
        bs = cfg.evaluation.calibration_batch_size or cfg.training.batch_size
        self.batches = cfg.evaluation.calibration_batches
        calib = train
        if isinstance(train, TensorSplit):
            calib = TensorSplit(train.images, train.labels, train.mean, train.std, augment=False)
        self.calib_loader = make_loader(calib, bs, shuffle=True, seed=cfg.training.seed + 17, device=device)
        self.val_loader = make_loader(val, bs, shuffle=False, device=device)
        self.test_loader = make_loader(test, bs, shuffle=False, device=device)
        self._profiles: dict[Switch, Any] = {}
        self._val: dict[Switch, float] = {}

    def calibration(self):
        for i, batch in enumerate(self.calib_loader):
            if i >= self.batches:
                break
            yield batch

    def profile(self, s: Switch):
        if s not in self._profiles:
            self._profiles[s] = profile(self.model, s, self.input_size)
        return self._profiles[s]

    def macs(self, s: Switch) -> float:
        return float(self.profile(s).macs)

    def device_macs(self, s: Switch) -> float:
        return float(self.profile(s).max_device_macs)

    def val_top1(self, s: Switch) -> float:
        if s not in self._val:
            calibrate_bn(self.model, s, self.calibration(), device=self.device)
            self._val[s] = accuracy(self.model, s, self.val_loader, device=self.device)[1]
            for bn in self.model.bn_layers():  # a searched configuration keeps no statistics
                bn.drop_stats(s)
        return self._val[s]

    def test_top1(self, s: Switch) -> float:
        calibrate_bn(self.model, s, self.calibration(), device=self.device)
        return accuracy(self.model, s, self.test_loader, device=self.device)[1]


def candidates(spec: ParecoStudySpec, cfg: RunConfig, space: StageSpace, ev: Evaluator, proposer) -> list[Switch]:
    """The configurations a method puts forward for its front, within ``front.evaluations``."""
    t, f = cfg.training, spec.front
    if t.method == "us":
        return [parse_switch(w) for w in MethodPlanner(t).us_widths()]
    if t.method == "slimmable":
        return t.parsed_switches()
    ends = [space.largest, space.smallest]
    if t.method == "pareco":  # the front PareCO learned while training: its history, best layers first
        return list(dict.fromkeys(ends + proposer.front_configurations(f.evaluations, last=f.history_last)))
    found = front_search(  # TwoStage: the search after training, on the validation split
        space,
        ev.val_top1,
        ev.macs,
        trials=f.evaluations,
        sampler=f.sampler,
        seed=f.seed,
        population_size=f.population_size,
    )
    return list(dict.fromkeys(ends + [s for s, _, _ in found]))


def run_method(spec: ParecoStudySpec, name: str, splits: Splits, train, val, log) -> tuple[MethodOutcome, Any]:
    cfg = spec.run_config(name)
    started = time.perf_counter()
    f = spec.front
    proposer = proposer_for(cfg, sampler=f.proposer_sampler, population_size=f.proposer_population)
    held = Splits(info=splits.info, train=train, test=splits.test)
    cfg_run = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"every": 0})})
    result = run_training(cfg_run, splits=held, proposer=proposer, log=lambda line: log(f"{name}: {line}"))
    train_seconds = result.seconds
    model = result.model.eval()
    device = next(model.parameters()).device
    test = splits.test
    if cfg.data.test_subset:
        from paradis.data import subset

        test = subset(test, cfg.data.test_subset, cfg.training.seed)
    ev = Evaluator(model, cfg, train, val, test, splits.info, device)
    space = StageSpace.from_config(cfg.training, model.num_stages)
    cands = candidates(spec, cfg, space, ev, proposer)
    evaluated = [FrontPoint(name, str(s), int(ev.macs(s)), int(ev.device_macs(s)), ev.val_top1(s)) for s in cands]
    keep = non_dominated([(p.macs, p.val_top1) for p in evaluated])
    front = sorted(
        (
            FrontPoint(**{**evaluated[i].as_dict(), "top1": ev.test_top1(parse_switch(evaluated[i].switch))})
            for i in keep
        ),
        key=lambda p: p.macs,
    )
    full = ev.macs(parse_switch("[1.0]"))
    ref = (spec.front.reference.macs_fraction, spec.front.reference.top1)
    hv = hypervolume([(p.macs / full, p.top1) for p in front], ref)
    outcome = MethodOutcome(
        name,
        f"{name} ({result.method})",
        cfg.training.method,
        time.perf_counter() - started,
        train_seconds,
        front,
        evaluated,
        hv,
    )
    d = spec.distributable
    if d is not None and d.method == name:
        outcome.distributable = distributable_table(spec, space, ev, full, log)
    return outcome, cfg


def distributable_table(spec, space: StageSpace, ev: Evaluator, full: float, log) -> list[dict]:
    """For each per-device budget: the best per-stage switch found on validation, then the test table
    of the found switches beside the uniform ones."""
    d = spec.distributable
    found: dict[Switch, str] = {}
    for b in d.budgets:
        best, val_acc, _ = constrained_search(
            space, ev.val_top1, ev.device_macs, b * full, trials=d.trials, seed=spec.front.seed
        )
        log(f"distributable: budget {b:g} x [1.0] per device -> {best} (validation top-1 {val_acc:.4f})")
        if best is not None:
            found[best] = f"{found[best]}; {b:g}" if best in found else f"{b:g}"
    switches = list(found) + [parse_switch(s) for s in d.uniform if parse_switch(s) not in found]
    rows = evaluate_switches(
        ev.model,
        switches,
        calibration=ev.calibration,
        test_loader=ev.test_loader,
        input_size=ev.input_size,
        num_classes=ev.num_classes,
        device=ev.device,
    )
    out = []
    for r in rows:
        s = parse_switch(r.switch)
        out.append({**r.as_dict(), "found_for_budget": found.get(s, ""), "per_stage": not s.is_uniform})
    return out


# --- reports ---------------------------------------------------------------------------------------------
def front_markdown(outcomes: list[MethodOutcome], full_macs: float, reference: ReferenceSpec) -> str:
    lines = [
        f"Hypervolume reference point: {reference.macs_fraction:g} x the [1.0] network's multiply-adds "
        f"({full_macs / 1e6:.3f} MMACs), top-1 {100 * reference.top1:.1f} %; MACs normalized by the [1.0] network's.",
        "",
        "| method | hypervolume | front points | train s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {o.label} | {o.hypervolume:.4f} | {len(o.front)} | {o.train_seconds:.0f} |" for o in outcomes]
    lines += ["", "| method | switch (per-stage widths) | MMACs | MACs / [1.0] | val top-1 % | test top-1 % |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    for o in outcomes:
        for p in o.front:
            lines.append(
                f"| {o.label} | {p.switch} | {p.macs / 1e6:.3f} | {p.macs / full_macs:.3f} | "
                f"{100 * p.val_top1:.2f} | {100 * p.top1:.2f} |"
            )
    return "\n".join(lines)


def budget_markdown(outcomes: list[MethodOutcome], full_macs: float, fractions=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0)) -> str:
    """The best test top-1 of each front within each budget, and which method leads there."""
    head = "| MACs budget / [1.0] | " + " | ".join(o.label for o in outcomes) + " | best |"
    lines = [head, "|---:|" + "---:|" * (len(outcomes) + 1)]
    for f in fractions:
        accs = []
        for o in outcomes:
            within = [p.top1 for p in o.front if p.macs <= f * full_macs + 0.5]
            accs.append(max(within) if within else None)
        known = [(a, o.label) for a, o in zip(accs, outcomes) if a is not None]
        top = max(a for a, _ in known) if known else None
        best = ", ".join(lbl for a, lbl in known if top is not None and a >= top - 1e-12) or "-"
        cells = ["-" if a is None else f"{100 * a:.2f}" for a in accs]
        lines.append(f"| {f:g} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def fronts_plot(outcomes: list[MethodOutcome], full_macs: float, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for o in outcomes:
        ev = sorted(o.evaluated, key=lambda p: p.macs)
        color = ax.plot(
            [p.macs / 1e6 for p in o.front],
            [100 * p.top1 for p in o.front],
            marker="o",
            label=f"{o.label} (HV {o.hypervolume:.3f})",
        )[0].get_color()
        ax.scatter([p.macs / 1e6 for p in ev], [100 * p.val_top1 for p in ev], s=10, alpha=0.3, color=color)
    ax.set_xlabel("multiply-adds (M)")
    ax.set_ylabel("top-1 % (lines: test, of the front; dots: validation)")
    ax.set_title(title)
    ax.axvline(full_macs / 1e6, color="grey", lw=0.5, ls=":")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --- the study -------------------------------------------------------------------------------------------
def run_pareco_study(spec: ParecoStudySpec, spec_text: str, uri: str, log=None) -> int:
    from orchestration.tracking import _log_text, _retry, ensure_experiment, flatten, make_client

    log = log or (lambda line: print(f"[pareco] {line}", file=sys.stderr, flush=True))
    client = make_client(uri)
    exp_id = ensure_experiment(client, uri, spec.experiment_name())
    parent = client.create_run(
        exp_id,
        run_name=spec.name,
        tags={
            "paradis.study": spec.name,
            "paradis.role": "study",
            "paradis.search": "pareco",
            "mlflow.note.content": spec.description,
        },
    )
    parent_id = parent.info.run_id
    _log_text(client, parent_id, spec_text, "spec/study.yaml")
    log(f"study {spec.name}: MLflow run {parent_id} in {uri}")
    base = spec.run_config(next(iter(spec.methods)))
    splits = load_splits(base)
    train, val = holdout(splits.train, base.data.train_subset, spec.front.validation, base.training.seed)
    outcomes: list[MethodOutcome] = []
    status = "FINISHED"
    try:
        for name in spec.methods:
            child = client.create_run(
                exp_id,
                run_name=name,
                tags={"mlflow.parentRunId": parent_id, "paradis.study": spec.name, "paradis.role": "trial"},
            )
            cid = child.info.run_id
            try:
                outcome, cfg = run_method(spec, name, splits, train, val, log)
            except Exception:
                client.set_terminated(cid, "FAILED")
                raise
            from mlflow.entities import Param

            params = [Param(k, str(v)[:6000]) for k, v in flatten(cfg.model_dump(mode="json")).items()]
            for i in range(0, len(params), 100):
                _retry(client.log_batch, cid, params=params[i : i + 100])
            client.log_metric(cid, "hypervolume", outcome.hypervolume)
            client.log_metric(cid, "train_seconds", outcome.train_seconds)
            client.log_metric(cid, "front_points", len(outcome.front))
            rows = [p.as_dict() for p in outcome.front]
            if rows:
                client.log_table(cid, data={k: [r[k] for r in rows] for k in rows[0]}, artifact_file="front/front.json")
            _log_text(
                client, cid, json.dumps([p.as_dict() for p in outcome.evaluated], indent=1), "front/evaluated.json"
            )
            if outcome.distributable:
                _log_text(client, cid, _distributable_md(outcome.distributable), "distributable/table.md")
            client.set_terminated(cid, "FINISHED")
            outcomes.append(outcome)
            log(
                f"{name}: hypervolume {outcome.hypervolume:.4f}, {len(outcome.front)} front points, "
                f"{outcome.seconds:.0f} s"
            )
        full = _full_macs(spec, splits)
        md = f"**{spec.name}**\n\n" + front_markdown(outcomes, full, spec.front.reference)
        md += "\n\n**Best test top-1 within a budget**\n\n" + budget_markdown(outcomes, full)
        for o in outcomes:
            if o.distributable:
                md += f"\n\n**Distributable search ({o.label})**\n\n" + _distributable_md(o.distributable)
        _log_text(client, parent_id, md, "study/fronts.md")
        rows = [{"method": o.label, **p.as_dict()} for o in outcomes for p in o.front]
        if rows:
            client.log_table(
                parent_id, data={k: [r[k] for r in rows] for k in rows[0]}, artifact_file="study/fronts.json"
            )
        for o in outcomes:
            client.log_metric(parent_id, f"hypervolume/{o.name}", o.hypervolume)
        client.log_param(parent_id, "hypervolume_reference", json.dumps(spec.front.reference.model_dump()))
        with tempfile.TemporaryDirectory() as d:
            plot = fronts_plot(
                outcomes, full, Path(d) / "pareto_fronts.png", f"{spec.name}: accuracy against multiply-adds"
            )
            client.log_artifact(parent_id, str(plot), "study")
        print(md)
    except BaseException:
        status = "FAILED"
        raise
    finally:
        client.set_terminated(parent_id, status)
    return 0


def _full_macs(spec: ParecoStudySpec, splits: Splits) -> float:
    from paradis.models import create_model

    model = create_model(
        spec.model.name,
        num_classes=splits.info.num_classes,
        wide_factor=spec.training.wide_factor,
        in_chans=splits.info.input_size[0],
    )
    return float(profile(model, "[1.0]", splits.info.input_size).macs)


def _distributable_md(rows: list[dict]) -> str:
    lines = ["| switch | found for budget (x [1.0] MACs per device) | test top-1 % | MMACs | max MMACs per device |"]
    lines.append("|---|---|---:|---:|---:|")
    for r in rows:
        lines.append(
            f"| {r['switch']} | {r['found_for_budget'] or 'uniform'} | {100 * r['top1']:.2f} | {r['macs'] / 1e6:.3f} | "
            f"{r['max_device_macs'] / 1e6:.3f} |"
        )
    return "\n".join(lines)
