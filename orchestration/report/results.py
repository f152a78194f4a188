"""The reproduction report: each claim of the paper checked at this project's scale, from the MLflow
runs of the reduced studies, with a verdict decided by one-sided tests over paired seeds.

``python -m orchestration.report results --tracking-uri URI`` writes ``docs/RESULTS.md``. A claim
quotes the sentence of the paper it checks (``paper.yaml``) and is a set of checks, each a statement
``difference >= bound`` (or ``<=``) about the per-seed difference of two accuracies (points), paired by
repeat index (hence by seed: a repeat's seed is the configuration's seed plus the index, the same in
every study). A claim is *reproduced* when every check's statement is shown to hold (one-sided t-test
at 2.5 %: an intersection-union test, 5 % split between two looks), *not reproduced* when Holm's
correction over its checks still finds one failing, and *inconclusive* otherwise. The same claims,
evaluated on the paper's own Tables 1-5 value against value, find what the paper says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.report.curves import convergence_line, parse_convergence
from orchestration.report.paper import PAPER_FILE, PaperClaim, load_paper, paper_records
from orchestration.report.rows import check_rows
from orchestration.report.seeds import (
    Group,
    Pairs,
    SeedValues,
    groups,
    interval95,
    mean_sd,
    paired,
    summary_markdown,
)
from orchestration.report.study import TrialRecord, markdown_row
from orchestration.spec import StudySpec
from paradis.registry import Registry
from paradis.switch import parse_switch

# The reduced studies of studies/, in the order the report lists them.
REDUCED_STUDIES = (
    "quickstart",
    "ablation",
    "baselines",
    "for_free",
    "scaling_8_switches",
    "sr_paradis",
    "pareco",
    "search",
    "search_multiobjective",
)
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
# The same roles at the paper's scale (studies/paper/): ``--scale paper`` reads these runs instead.
PAPER_STUDIES = {
    "ablation": "paper/ablation_mobilenet_imagenet",
    "baselines": "paper/baselines_mobilenet_imagenet",
    "for_free": "paper/for_free_resnet50_imagenet",
    "scaling_8_switches": "paper/scaling_8_switches_mobilenet_imagenet",
    "sr_paradis": "paper/sr_paradis_div2k",
    "pareco": "paper/pareco_imagenet",
    "search": "paper/search_imagenet",
}
SCALES = {"reduced": {k: k for k in REDUCED_STUDIES}, "paper": PAPER_STUDIES}


# --- the studies' runs -----------------------------------------------------------------------------
@dataclass
class StudyResult:
    """A study's newest finished run in the tracking store (``run_id`` ``None``: never finished)."""

    key: str  # the study's role (a reduced study's file stem)
    spec: StudySpec | None  # None: the paper's own tables
    path: str = ""  # the spec file, under studies/
    run_id: str | None = None  # the newest
    wall_s: float | None = None  # of every run pooled
    records: list[TrialRecord] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)  # the runs whose seeds are pooled, newest first
    convergence: list[dict[str, Any]] = field(default_factory=list)  # each run's study/convergence.json
    configuration: dict[str, Any] | None = None  # the resolved spec, less the seeds (POOLED_KEYS)
    experiment_name: str = ""  # without a spec (results read from exported files)

    @property
    def experiment(self) -> str:
        return self.spec.tracking.experiment if self.spec is not None else self.experiment_name

    def group(self, variant: str) -> Group | None:
        return next((g for g in groups(self.records) if g.name == variant), None)

    def groups_where(self, key: str, value: Any) -> list[Group]:
        return [g for g in groups(self.records) if g.params.get(key) == value]


def search_values(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched values: the ``paradis.search`` tag, else (runs of older versions) its
    ``search.*`` params, which MLflow keeps as strings."""
    try:
        params = json.loads(trial["tags"].get("paradis.search") or "null")
    except json.JSONDecodeError:
        params = None
    if isinstance(params, dict):
        return params
    out: dict[str, Any] = {}
    for key, value in (trial.get("params") or {}).items():
        if key.startswith("search."):
            out[key[len("search.") :]] = int(value) if key == "search.repeat" and value.isdigit() else value
    return out


def record_of(trial: dict[str, Any], rows: list[dict[str, Any]]) -> TrialRecord:
    """A child run as the study reporter's :class:`TrialRecord` (its search values from the
    ``paradis.search`` tag, the method's label from ``paradis.method``)."""
    tags = trial["tags"]
    params = search_values(trial)
    status = "TERMINATED" if trial["status"] == "FINISHED" else trial["status"]
    return TrialRecord(
        tags.get("paradis.trial_id", trial["run_id"]),
        trial["name"] or trial["run_id"],
        tags.get("paradis.method", "?"),
        params,
        rows,
        status,
    )


# What may differ between two runs of one study whose seeds the report pools: how many seeds each ran.
POOLED_KEYS = ("repeats", "repeat_from")


def _configuration(tracker, run_id: str) -> dict[str, Any] | None:
    """The study's resolved spec as the run logged it, less what :data:`POOLED_KEYS` may change."""
    text = tracker.load_text(run_id, "spec/resolved.json")
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return {k: v for k, v in data.items() if k not in POOLED_KEYS} if isinstance(data, dict) else None


def _curves_by_trial(table: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """``study/learning_curves.json`` rows (trial, epoch, metric, value) as each trial's curve."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for row in table:
        trial, epoch, metric, value = (row.get(k) for k in ("trial", "epoch", "metric", "value"))
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if isinstance(trial, str) and isinstance(epoch, int) and isinstance(metric, str) and numeric:
            by.setdefault(trial, {}).setdefault(epoch, {"epoch": epoch})[metric] = float(value)
    return {t: [epochs[e] for e in sorted(epochs)] for t, epochs in by.items()}


def load_study(tracker, key: str, spec: StudySpec) -> StudyResult:
    """The newest FINISHED parent run of ``spec`` in ``tracker`` with its trials' switch tables, pooled
    with every other FINISHED run of the same configuration (extra seeds, ``repeat_from``): a run that
    differs in anything but its seeds is left out, and a repeat measured twice drops out of the pairs."""
    result = StudyResult(key, spec)
    finished = [r for r in tracker.study_runs(spec.name) if r["status"] == "FINISHED"]
    if not finished:
        return result
    newest = finished[0]
    config = _configuration(tracker, newest["run_id"])
    runs = [newest] + [r for r in finished[1:] if config is not None and _configuration(tracker, r["run_id"]) == config]
    result.run_id, result.configuration = newest["run_id"], config
    result.run_ids = [r["run_id"] for r in runs]
    result.wall_s = sum((r["end_ms"] - r["start_ms"]) / 1000 for r in runs if r["end_ms"] and r["start_ms"]) or None
    for run in runs:
        curves = _curves_by_trial(tracker.load_table(run["run_id"], "study/learning_curves.json"))
        for trial in tracker.trial_details(run["run_id"]):
            where = f"table/switches.json of run {trial['run_id']}"
            rows = check_rows(tracker.load_table(trial["run_id"], "table/switches.json"), where)
            record = record_of(trial, rows)
            record.curves = curves.get(record.name, [])
            result.records.append(record)
        text = tracker.load_text(run["run_id"], "study/convergence.json")
        try:
            summary = parse_convergence(json.loads(text)) if text else None
        except ValueError:
            summary = None
        if summary is not None:
            result.convergence.append(summary)
    result.records.sort(key=lambda r: r.name)
    return result


# --- checks and claims -----------------------------------------------------------------------------
def by_seed(group: Group | None, switch: str) -> SeedValues:
    """The switch's accuracy in each repeat of a configuration (a US or slimmable configuration gives
    the width matched to ``switch`` in cost); none for a configuration the study lacks."""
    return group.by_repeat(switch) if group else SeedValues({})


# The level of a claim's verdict: 5 % overall, split between at most two looks at the data (the pilot
# seeds, then one round of extra seeds by ``orchestration.report decide``): 2.5 % at each look.
ALPHA = 0.05
LOOKS = 2
ALPHA_LOOK = ALPHA / LOOKS


@dataclass
class Check:
    """The statement ``a - b  op  bound`` (points) over paired seeds."""

    what: str
    switch: str
    a: SeedValues | dict[int, float]
    b: SeedValues | dict[int, float]
    op: str  # ">=" or "<="
    bound: float  # points
    studies: tuple[str, ...] = ()  # the studies whose seeds it pairs (where extra seeds would go)

    @property
    def pairs(self) -> Pairs:
        return paired(self.a, self.b, scale=100.0)

    @property
    def diffs(self) -> list[float]:
        return list(self.pairs.diffs)

    def interval(self) -> tuple[float, float, float]:
        d = self.diffs
        return interval95(d) if d else (math.nan, math.nan, math.nan)

    def p_values(self) -> tuple[float, float]:
        """One-sided Student's t p-values over the paired seeds: ``(holds, fails)``, the evidence that
        the statement holds (against its negation) and that it fails (against it). ``(1, 1)`` with
        fewer than two seeds."""
        from scipy.stats import t as student_t

        d = self.diffs
        if len(d) < 2:
            return 1.0, 1.0
        mean, sd, n = mean_sd(d)
        gap = (mean - self.bound) if self.op == ">=" else (self.bound - mean)  # > 0: on the statement's side
        if sd == 0:
            return (0.0, 1.0) if gap > 0 else (1.0, 0.0) if gap < 0 else (1.0, 1.0)
        t = gap / (sd / math.sqrt(n))
        return float(student_t.sf(t, n - 1)), float(student_t.cdf(t, n - 1))

    def holds_exactly(self) -> bool | None:
        """Whether every pair's difference satisfies the statement (for single values such as the
        paper's own, to the printed hundredth); ``None`` without a pair."""
        d = self.diffs
        if not d:
            return None
        ok = (lambda x: x >= self.bound) if self.op == ">=" else (lambda x: x <= self.bound)
        return all(ok(round(x, 6)) for x in d)

    def verdict(self, alpha: float = ALPHA_LOOK) -> str:
        """This check alone, uncorrected: its statement shown to hold (or to fail) at level ``alpha``
        one-sided; at 2.5 % this is where the 95 % interval lies."""
        holds, fails = self.p_values()
        return "reproduced" if holds <= alpha else "not reproduced" if fails <= alpha else "inconclusive"

    def seeds_to_decide(self, checks: int = 1, limit: int = 1000) -> int | None:
        """Fewest seeds that would decide the check, were the mean difference and its spread the ones
        measured: its statement shown to hold at 2.5 % one-sided, or (the mean on the other side of the
        bound) shown to fail at Holm's strictest level over the claim's ``checks``, 2.5 % / checks.
        ``None``: no spread to go by, the mean on the bound, or over ``limit``."""
        from scipy.stats import t as student_t

        d = self.diffs
        if len(d) < 2:
            return None
        mean, sd, _ = mean_sd(d)
        holds_side = (mean > self.bound) if self.op == ">=" else (mean < self.bound)
        alpha = ALPHA_LOOK if holds_side else ALPHA_LOOK / max(1, checks)
        gap = abs(mean - self.bound)
        if sd == 0 or gap == 0:
            return None
        n = len(d)
        while n <= limit and float(student_t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n) >= gap:
            n += 1
        return n if n <= limit else None


def holm(p: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections of ``p`` at family-wise level ``alpha``."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        out[i] = True
    return out


def check_verdicts(checks: Sequence[Check], alpha: float = ALPHA_LOOK, exact: bool = False) -> list[str]:
    """Each check's verdict within its claim. A check is *reproduced* when its statement is shown to
    hold at ``alpha`` (one-sided); a claim is the conjunction of its checks, so this needs no correction
    (an intersection-union test). It is *not reproduced* only when Holm's correction over the claim's
    checks still finds it failing, so a claim of many checks is not refuted by chance. ``exact``: single
    values (the paper's own numbers) are compared as they are."""
    if exact:
        verdicts = [c.holds_exactly() for c in checks]
        return ["inconclusive" if v is None else "reproduced" if v else "not reproduced" for v in verdicts]
    p = [c.p_values() for c in checks]
    fails = holm([f for _, f in p], alpha)
    return [
        "reproduced" if h <= alpha else "not reproduced" if failed else "inconclusive"
        for (h, _), failed in zip(p, fails)
    ]


def claim_verdict(checks: Sequence[Check], alpha: float = ALPHA_LOOK, exact: bool = False) -> str:
    """Reproduced when every check is, not reproduced when any is (after Holm), else inconclusive."""
    verdicts = set(check_verdicts(checks, alpha, exact))
    if not checks:
        return "inconclusive"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if verdicts == {"reproduced"} else "inconclusive"


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    studies: tuple[str, ...]  # the reduced studies it reads
    checks: Callable[[dict[str, StudyResult]], list[Check]]
    decided_by: str  # the scale (a studies/paper/ file) that would decide it where ours cannot

    @property
    def paper(self) -> PaperClaim:
        """The sentence of the paper it checks, where it stands, and how it is read as checks."""
        return load_paper().claims[self.key]


CLAIMS: Registry[Claim] = Registry("claim")


def claim(key: str, statement: str, studies: tuple[str, ...], decided_by: str):
    def register(fn: Callable[[dict[str, StudyResult]], list[Check]]):
        if key not in load_paper().claims:
            raise ValueError(f"claim {key!r} quotes no sentence of the paper ({PAPER_FILE.name})")
        CLAIMS.add(key, Claim(key, statement, studies, fn, decided_by))
        return fn

    return register


PARADIS_SWITCHES = ("[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]")
DISTRIBUTABLE = ("[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]")
# The ParaDiS configuration that each study compares with its baselines (ResNet-50: Wide IPKD-A, as
# Table 5), and the baselines studies: this project's (MobileNet v1) and the paper's two networks.
# The quickstart (2 epochs, its teacher still improving) is the main job, not evidence: no claim reads it.
PARADIS_OF = {
    "ablation": "paradis-wide-ipkd",
    "baselines": "paradis-wide-ipkd",
    "ablation_resnet50": "paradis-wide-ipkd-a-1",
    "baselines_resnet50": "paradis-wide-ipkd-a-1",
}
BASELINES = ("baselines", "baselines_resnet50")


def _study(results: dict[str, StudyResult], key: str) -> StudyResult | None:
    r = results.get(key)
    return r if r is not None and r.run_id else None


def _row(group: Group, switch: str) -> dict[str, Any] | None:
    return next((row for r in group.records for row in r.rows if row["switch"] == switch), None)


def _narrow(row: dict[str, Any]) -> bool:
    return parse_switch(row["switch"]).total <= 1.0 + 1e-9


def closest_in_macs(group: Group, macs: float) -> tuple[str, int] | None:
    """The width of ``group`` (a US or slimmable configuration, up to 1.0) evaluated at the total
    multiply-adds closest to ``macs``, and its multiply-adds. Widths evaluated because their cost
    matches a ParaDiS switch count as well: each is a real evaluation at that width."""
    rows = {row["switch"]: row["macs"] for r in group.records for row in r.rows if _narrow(row)}
    best = min(rows, key=lambda s: abs(rows[s] - macs)) if rows else None
    return (best, rows[best]) if best else None


def _mmacs(macs: float) -> str:
    return f"{macs / 1e6:.2f} MMACs"


def _widest_first(switch: str) -> tuple[float, int]:
    return (-parse_switch(switch).total, len(parse_switch(switch).widths))


def _paradis_and_us(results: dict[str, StudyResult]):
    """Each baselines study that ran, with its ParaDiS and its US Wide IPKD configuration."""
    for key in BASELINES:
        study = _study(results, key)
        if study is not None:
            yield key, study.group(PARADIS_OF[key]), study.group("us-wide-ipkd")


def _prefix(key: str) -> str:
    return "" if key == "baselines" else f"{key}: "


@claim(
    "C1",
    "ParaDiS switches are as good as individually trained models of the same structure (within 1 point).",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml and baselines_resnet50_imagenet.yaml (ImageNet, "
    "250 and 100 epochs): the paper's individual models are trained as long as ParaDiS.",
)
def _c1(results: dict[str, StudyResult]) -> list[Check]:
    checks = []
    for key in BASELINES:
        study = _study(results, key)
        if study is None:
            continue
        paradis = study.group(PARADIS_OF[key])
        for g in groups(study.records):
            if g.label.startswith("Individual"):
                trained = next((row["switch"] for r in g.records for row in r.rows if row.get("trained")), None)
                if trained:
                    what = f"{_prefix(key)}{paradis.label if paradis else 'ParaDiS'} - {g.name}"
                    a, b = by_seed(paradis, trained), by_seed(g, trained)
                    checks.append(Check(what, trained, a, b, ">=", -1.0, (key,)))
    return checks


@claim(
    "C2",
    "Distributable ParaDiS switches are within 1 point of US switches of the same total multiply-adds.",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml (Table 4).",
)
def _c2(results: dict[str, StudyResult]) -> list[Check]:
    checks = []
    for key, paradis, us in _paradis_and_us(results):
        what = f"{_prefix(key)}ParaDiS - US Wide IPKD (same MACs)"
        checks += [Check(what, s, by_seed(paradis, s), by_seed(us, s), ">=", -1.0, (key,)) for s in DISTRIBUTABLE]
    return checks


@claim(
    "C3",
    "The never-trained [0.5, 0.25, 0.25] lies between [0.5, 0.5] and [4x0.25].",
    ("ablation", "baselines"),
    "studies/paper/ablation_mobilenet_imagenet.yaml (Table 1, Figure 4).",
)
def _c3(results: dict[str, StudyResult]) -> list[Check]:
    checks = []
    for key, variant in PARADIS_OF.items():
        study = _study(results, key)
        g = study.group(variant) if study else None
        if g is None:
            continue
        mid, s = by_seed(g, "[0.5, 0.25, 0.25]"), "[0.5, 0.25, 0.25]"
        checks.append(Check(f"{key}/{variant}: [0.5, 0.5] - it", s, by_seed(g, "[0.5, 0.5]"), mid, ">=", 0.0, (key,)))
        checks.append(Check(f"{key}/{variant}: it - [4x0.25]", s, mid, by_seed(g, "[4x0.25]"), ">=", 0.0, (key,)))
    return checks


@claim(
    "C4",
    "Table 1's order: Wide IPKD > IPKD > no distillation; activation distillation (beta) does not help MobileNet v1.",
    ("ablation",),
    "studies/paper/ablation_mobilenet_imagenet.yaml (250 epochs).",
)
def _c4(results: dict[str, StudyResult]) -> list[Check]:
    table1 = {
        "ablation": [
            ("Wide IPKD - IPKD", "paradis-wide-ipkd", "paradis-ipkd", ">="),
            ("IPKD - no distillation", "paradis-ipkd", "paradis-no-kd", ">="),
            ("Wide IPKD-A (beta 0.1) - Wide IPKD", "paradis-wide-ipkd-a-0.1", "paradis-wide-ipkd", "<="),
            ("Wide IPKD-A (beta 1) - Wide IPKD", "paradis-wide-ipkd-a-1", "paradis-wide-ipkd", "<="),
        ],
    }
    checks = []
    for key, pairs in table1.items():
        study = _study(results, key)
        if study is None:
            continue
        for what, a, b, op in pairs:
            ga, gb = study.group(a), study.group(b)
            checks += [
                Check(f"{key}: {what}", s, by_seed(ga, s), by_seed(gb, s), op, 0.0, (key,)) for s in PARADIS_SWITCHES
            ]
    return checks


@claim(
    "C5",
    "At equal multiply-adds per device, the distributed ParaDiS curve lies above US.",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml (Figure 4).",
)
def _c5(results: dict[str, StudyResult]) -> list[Check]:
    checks = []
    for key, paradis, us in _paradis_and_us(results):
        for s in DISTRIBUTABLE:
            row = _row(paradis, s) if paradis else None
            match = closest_in_macs(us, row["max_device_macs"]) if row and us else None
            if match:
                width, macs = match
                per_device = _mmacs(row["max_device_macs"])
                what = f"{_prefix(key)}ParaDiS {s} ({per_device} per device) - US {width} ({_mmacs(macs)})"
                checks.append(Check(what, s, by_seed(paradis, s), by_seed(us, width), ">=", 0.0, (key,)))
    return checks


@claim(
    "C6",
    "Training [8x0.125] as a fifth switch costs each switch trained in both less than 1 point (appendix F.1).",
    ("for_free",),
    "studies/paper/for_free_resnet50_imagenet.yaml (ResNet-50, 100 epochs; Figure 11).",
)
def _c6(results: dict[str, StudyResult]) -> list[Check]:
    study = _study(results, "for_free")
    if study is None:
        return []
    four, five = study.groups_where("training.switches", "four"), study.groups_where("training.switches", "five")
    if not (four and five):
        return []

    def trained(g: Group) -> list[str]:
        return sorted({row["switch"] for r in g.records for row in r.rows if row.get("trained")}, key=_widest_first)

    return [
        Check(f"five switches - four: {s}", s, by_seed(five[0], s), by_seed(four[0], s), ">=", -1.0, ("for_free",))
        for s in trained(four[0])
        if s in trained(five[0])
    ]


@claim(
    "C7",
    "Eight switches trained at every step are each at least 4 points below US (appendix F.2).",
    ("scaling_8_switches", "baselines"),
    "studies/paper/scaling_8_switches_mobilenet_imagenet.yaml with "
    "studies/paper/baselines_mobilenet_imagenet.yaml (Figure 12).",
)
def _c7(results: dict[str, StudyResult]) -> list[Check]:
    scaling, baselines = _study(results, "scaling_8_switches"), _study(results, "baselines")
    if scaling is None or baselines is None:
        return []
    us = baselines.group("us-wide-ipkd")
    checks = []
    for g in scaling.groups_where("training.switches", "eight"):
        trained = sorted(
            # the wide teacher has no US counterpart (US widths end at 1.0)
            {row["switch"]: row for r in g.records for row in r.rows if row.get("trained") and _narrow(row)}.values(),
            key=lambda row: -row["macs"],
        )
        for row in trained:
            match = closest_in_macs(us, row["macs"]) if us else None
            if match:
                width, macs = match
                what = f"8 switches {row['switch']} ({_mmacs(row['macs'])}) - US {width} ({_mmacs(macs)})"
                a, b = by_seed(g, row["switch"]), by_seed(us, width)
                checks.append(Check(what, row["switch"], a, b, "<=", -4.0, ("scaling_8_switches", "baselines")))
    return checks


def paper_results() -> dict[str, StudyResult]:
    """The paper's Tables 1-5 as study results (one value per configuration and switch)."""
    paper = load_paper()
    out = {}
    for key, study in paper.studies.items():
        records = paper_records(study, paper.models[study.model].macs)
        out[key] = StudyResult(key, None, path=study.source, run_id="paper", records=records)
    return out


# --- the report ------------------------------------------------------------------------------------
def _points(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def _mean_of(values: SeedValues | dict[int, float], seeds: Sequence[int]) -> str:
    v = values.values if isinstance(values, SeedValues) else values
    return f"{100 * sum(v[k] for k in seeds) / len(seeds):.2f}" if seeds else "n/a"


def check_table(checks: Sequence[Check], verdicts: Sequence[str]) -> list[str]:
    """A row per check: both sides' mean accuracy over the paired seeds, their difference, its
    interval, the one-sided p-values, the statement and its verdict within the claim."""
    lines = [
        "| comparison | switch | a (%) | b (%) | a - b (points) | 95 % interval | n | p holds / fails "
        "| statement | verdict | seeds to decide |",
        "|---|---|---:|---:|---:|---|---:|---|---|---|---:|",
    ]
    for c, verdict in zip(checks, verdicts):
        mean, lo, hi = c.interval()
        seeds = c.pairs.repeats
        interval = "n/a" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        holds, fails = c.p_values()
        p = "n/a" if len(seeds) < 2 else f"{holds:.3g} / {fails:.3g}"
        cells = [c.what, c.switch, _mean_of(c.a, seeds), _mean_of(c.b, seeds), _points(mean), interval]
        need = c.seeds_to_decide(len(checks))
        decide = "" if verdict != "inconclusive" else str(need) if need else "> 1000" if len(seeds) > 1 else "?"
        cells += [str(len(seeds)), p, f"a - b {c.op} {c.bound:g}", verdict, decide]
        lines.append(markdown_row(cells))
    return lines


def paper_table(checks: Sequence[Check], verdicts: Sequence[str]) -> list[str]:
    """The claim's checks on the paper's own numbers, value against value."""
    lines = ["| comparison | switch | a (%) | b (%) | a - b (points) | statement | on the paper's numbers |"]
    lines.append("|---|---|---:|---:|---:|---|---|")
    for c, verdict in zip(checks, verdicts):
        seeds = c.pairs.repeats
        cells = [c.what, c.switch, _mean_of(c.a, seeds), _mean_of(c.b, seeds), _points(c.interval()[0])]
        lines.append(markdown_row([*cells, f"a - b {c.op} {c.bound:g}", verdict]))
    return lines


def _wall(seconds: float | None) -> str:
    return "not run" if seconds is None else f"{seconds / 60:.1f} min"


def study_section(result: StudyResult) -> list[str]:
    head = f"### {result.key} (`studies/{result.path or result.key}.yaml`, experiment `{result.experiment}`)"
    if result.run_id is None:
        return [head, "", "Not run in this tracking store (no finished run of the study).", ""]
    seeds = sorted({int(r.params.get("repeat", 0)) for r in result.records})
    done = sum(r.status == "TERMINATED" for r in result.records)
    runs = result.run_ids or [result.run_id]
    named = f"Run `{runs[0]}`" if len(runs) == 1 else "Runs " + ", ".join(f"`{r}`" for r in runs) + " (seeds pooled)"
    lines = [
        head,
        "",
        f"{named}: {done} of {len(result.records)} trials finished, {len(seeds)} seed(s), "
        f"wall time {_wall(result.wall_s)}.",
        "",
    ]
    if result.convergence:
        worst = max(
            (c for c in result.convergence if c.get("worst")),
            key=lambda c: c["trials"][c["worst"]]["gain"],
            default=result.convergence[0],
        )
        lines += [convergence_line(worst), ""]
    if result.records:
        lines += [summary_markdown(result.records), ""]
    return lines


SCALE_TEXT = {
    "reduced": "Each claim of the paper is checked at this project's reduced scale (MobileNet v1 small and "
    "ResNet small on 5,000 Fashion-MNIST images for 8 epochs, the full test set, on CPU; why this scale: "
    "docs/SCALE.md),",
    "paper": "Each claim of the paper is checked at the paper's scale (the studies of `studies/paper/`),",
}
METHOD_TEXT = """from the newest finished run of each study. A check is a statement about the difference of two
accuracies in points, paired by seed (repeat index). Its evidence is a one-sided Student's t-test over
the paired seeds each way: *p holds* tests the statement's negation, *p fails* the statement.

- A claim is **reproduced** when every one of its checks holds at 2.5 % (*p holds* <= 0.025; the 95 %
  interval lies on the statement's side of the bound). A claim is the conjunction of its checks, so
  this intersection-union test keeps the level without a correction.
- It is **not reproduced** when a check fails after Holm's correction over the claim's checks (the
  smallest *p fails* <= 0.025 / m, and so on), so that a claim of many checks is not refuted by chance.
- Otherwise it is **inconclusive**; with fewer than two seeds a check is always inconclusive.
- The level, 5 % per claim, is split between at most two looks at the data (the pilot seeds, and one
  round of extra seeds run where they decide): 2.5 % at each look, so looking twice does not inflate
  false verdicts (a Bonferroni split over looks, valid whatever the first look decided).
- *Seeds to decide*: for an inconclusive check, the fewest seeds whose interval would leave the bound
  out if the mean difference and its spread stayed as measured (an estimate, not a promise).

Every claim is also evaluated on the paper's own Tables 1-5 (single values, compared as printed):
the column *paper* says whether the checks find there what the paper says."""


def results_markdown(results: dict[str, StudyResult], command: str, scale: str = "reduced") -> str:
    """``docs/RESULTS.md``: the verdicts, each claim's quote and checks, and every study's table."""
    paper = paper_results()
    evaluated = {key: c.checks(results) for key, c in CLAIMS.items()}
    on_paper = {key: c.checks(paper) for key, c in CLAIMS.items()}
    verdicts = {key: claim_verdict(checks) for key, checks in evaluated.items()}
    lines = [
        "# Reproduction report",
        "",
        f"Generated by `{command}` from the studies' MLflow runs; do not edit by hand.",
        "",
        SCALE_TEXT[scale],
        METHOD_TEXT,
        "",
        "| claim | statement | studies (wall time) | paper | verdict |",
        "|---|---|---|---|---|",
    ]
    for key, c in CLAIMS.items():
        studies = ", ".join(f"{s} ({_wall(results[s].wall_s) if s in results else 'not read'})" for s in c.studies)
        own = claim_verdict(on_paper[key], exact=True) if on_paper[key] else "no values"
        lines.append(f"| {key} | {c.statement} | {studies} | {own} | **{verdicts[key]}** |")
    lines.append("")
    for key, c in CLAIMS.items():
        checks = evaluated[key]
        quote = c.paper
        lines += [f"## {key}: {verdicts[key]}", "", f"> {quote.quote}", f"> ({quote.where})", ""]
        lines += [f"Read as: {quote.reading}.", ""]
        if checks:
            lines += check_table(checks, check_verdicts(checks))
        else:
            missing = [s for s in c.studies if _study(results, s) is None]
            lines.append(f"No data: {', '.join(missing) or 'the studies'} not run in this tracking store.")
        if on_paper[key]:
            lines += ["", "On the paper's own numbers:", ""]
            lines += paper_table(on_paper[key], check_verdicts(on_paper[key], exact=True))
        else:
            lines += ["", "The paper prints no values for it (a figure only): checked at this project's scale."]
        lines += ["", f"What would decide it at the paper's scale: {c.decided_by}", ""]
    lines += ["## The studies", ""]
    for result in results.values():
        lines += study_section(result)
    return "\n".join(lines).rstrip() + "\n"


def load_results(
    uri: str, studies_dir: Path, keys: Sequence[str] = REDUCED_STUDIES, scale: str = "reduced", tracker_of=None
) -> dict[str, StudyResult]:
    """The studies ``keys`` (roles; those with a file at ``scale``) of ``studies_dir``, each with its
    newest finished run in store ``uri``."""
    from orchestration.preflight import load_study as load_spec
    from orchestration.tracking import open_tracker

    open_ = tracker_of or open_tracker
    out = {}
    for key in keys:
        path = SCALES[scale].get(key)
        if path is None:
            continue
        spec = load_spec(studies_dir / f"{path}.yaml")
        result = load_study(open_(uri, spec.tracking.experiment), key, spec)
        result.path = path
        out[key] = result
    return out
