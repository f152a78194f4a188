"""The reproduction report: each claim of the paper checked at this project's scale, from the MLflow
runs of the reduced studies, with a verdict that a paired 95 % interval over seeds decides.

``python -m orchestration.report results --tracking-uri URI`` writes ``docs/RESULTS.md``. A claim is
a set of checks, each a statement ``difference >= bound`` (or ``<=``) about the per-seed difference of
two accuracies (points), paired by repeat index (hence by seed: a repeat's seed is the
configuration's seed plus the index, the same in every study). A check is *reproduced* when the whole
interval satisfies the statement, *not reproduced* when none of it does, and *inconclusive* otherwise
(or with fewer than two seeds). A claim is reproduced when all its checks are, not reproduced when any
check is not, inconclusive otherwise."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from orchestration.report.study import TrialRecord
from orchestration.spec import StudySpec
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
    spec: StudySpec
    path: str = ""  # the spec file, under studies/
    run_id: str | None = None
    wall_s: float | None = None
    records: list[TrialRecord] = field(default_factory=list)

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


def load_study(tracker, key: str, spec: StudySpec) -> StudyResult:
    """The newest FINISHED parent run of ``spec`` in ``tracker`` and its trials' switch tables."""
    result = StudyResult(key, spec)
    run = next((r for r in tracker.study_runs(spec.name) if r["status"] == "FINISHED"), None)
    if run is None:
        return result
    result.run_id = run["run_id"]
    if run["end_ms"] and run["start_ms"]:
        result.wall_s = (run["end_ms"] - run["start_ms"]) / 1000
    for trial in tracker.trial_details(run["run_id"]):
        result.records.append(record_of(trial, tracker.load_table(trial["run_id"], "table/switches.json")))
    result.records.sort(key=lambda r: r.name)
    return result


# --- checks and claims -----------------------------------------------------------------------------
def by_seed(group: Group | None, switch: str) -> SeedValues:
    """The switch's accuracy in each repeat of a configuration (a US or slimmable configuration gives
    the width matched to ``switch`` in cost); none for a configuration the study lacks."""
    return group.by_repeat(switch) if group else SeedValues({})


@dataclass
class Check:
    """The statement ``a - b  op  bound`` (points) over paired seeds."""

    what: str
    switch: str
    a: SeedValues | dict[int, float]
    b: SeedValues | dict[int, float]
    op: str  # ">=" or "<="
    bound: float  # points

    @property
    def pairs(self) -> Pairs:
        return paired(self.a, self.b, scale=100.0)

    @property
    def diffs(self) -> list[float]:
        return list(self.pairs.diffs)

    def interval(self) -> tuple[float, float, float]:
        d = self.diffs
        return interval95(d) if d else (math.nan, math.nan, math.nan)

    def verdict(self) -> str:
        _, lo, hi = self.interval()
        if math.isnan(lo):
            return "inconclusive"
        inside, outside = (
            (lo >= self.bound, hi < self.bound) if self.op == ">=" else (hi <= self.bound, lo > self.bound)
        )
        return "reproduced" if inside else "not reproduced" if outside else "inconclusive"

    def seeds_to_decide(self, limit: int = 1000) -> int | None:
        """Fewest seeds whose interval would leave ``bound`` out, were the mean difference and its
        spread the ones measured (``None``: decided already, or no spread to go by, or over ``limit``)."""
        from scipy.stats import t as student_t

        d = self.diffs
        if len(d) < 2 or self.verdict() != "inconclusive":
            return None
        mean, sd, _ = mean_sd(d)
        gap = abs(mean - self.bound)
        if sd == 0 or gap == 0:
            return None
        n = len(d) + 1
        while n <= limit and float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n) >= gap:
            n += 1
        return n if n <= limit else None


def claim_verdict(checks: Sequence[Check]) -> str:
    verdicts = {c.verdict() for c in checks}
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


CLAIMS: dict[str, Claim] = {}


def claim(key: str, statement: str, studies: tuple[str, ...], decided_by: str):
    def register(fn: Callable[[dict[str, StudyResult]], list[Check]]):
        if key in CLAIMS:
            raise ValueError(f"claim {key!r} is already registered")
        CLAIMS[key] = Claim(key, statement, studies, fn, decided_by)
        return fn

    return register


PARADIS_SWITCHES = ("[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]")
DISTRIBUTABLE = ("[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]")


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


@claim(
    "C1",
    "ParaDiS switches are at least as accurate as individually trained models of the same structure.",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml and baselines_resnet50_imagenet.yaml (ImageNet, "
    "250 and 100 epochs): the paper's individual models are trained as long as ParaDiS.",
)
def _c1(results: dict[str, StudyResult]) -> list[Check]:
    study = _study(results, "baselines")
    if study is None:
        return []
    paradis = study.group("paradis-wide-ipkd")
    checks = []
    for g in groups(study.records):
        if g.label.startswith("Individual"):
            trained = next((row["switch"] for r in g.records for row in r.rows if row.get("trained")), None)
            if trained:
                a, b = by_seed(paradis, trained), by_seed(g, trained)
                checks.append(Check(f"ParaDiS Wide IPKD - {g.name}", trained, a, b, ">=", 0.0))
    return checks


@claim(
    "C2",
    "Distributable ParaDiS switches are within 1 point of US switches of the same total multiply-adds.",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml (Table 4).",
)
def _c2(results: dict[str, StudyResult]) -> list[Check]:
    study = _study(results, "baselines")
    if study is None:
        return []
    paradis, us = study.group("paradis-wide-ipkd"), study.group("us-wide-ipkd")
    return [
        Check("ParaDiS Wide IPKD - US Wide IPKD (same MACs)", s, by_seed(paradis, s), by_seed(us, s), ">=", -1.0)
        for s in DISTRIBUTABLE
    ]


@claim(
    "C3",
    "The never-trained [0.5, 0.25, 0.25] lies between [0.5, 0.5] and [4x0.25].",
    ("quickstart", "ablation", "baselines"),
    "studies/paper/ablation_mobilenet_imagenet.yaml (Table 1, Figure 4).",
)
def _c3(results: dict[str, StudyResult]) -> list[Check]:
    checks = []
    for key, variant in (
        ("quickstart", "wide-ipkd"),
        ("ablation", "paradis-wide-ipkd"),
        ("baselines", "paradis-wide-ipkd"),
    ):
        study = _study(results, key)
        g = study.group(variant) if study else None
        if g is None:
            continue
        mid = by_seed(g, "[0.5, 0.25, 0.25]")
        checks.append(
            Check(f"{key}/{variant}: [0.5, 0.5] - it", "[0.5, 0.25, 0.25]", by_seed(g, "[0.5, 0.5]"), mid, ">=", 0.0)
        )
        checks.append(
            Check(f"{key}/{variant}: it - [4x0.25]", "[0.5, 0.25, 0.25]", mid, by_seed(g, "[4x0.25]"), ">=", 0.0)
        )
    return checks


@claim(
    "C4",
    "Table 1's order: Wide IPKD > IPKD > no distillation; activation distillation (beta) does not help MobileNet v1.",
    ("quickstart", "ablation"),
    "studies/paper/ablation_mobilenet_imagenet.yaml (250 epochs): at 2 epochs the wide teacher is itself "
    "barely trained, so distilling from it is not yet the advantage the paper measures.",
)
def _c4(results: dict[str, StudyResult]) -> list[Check]:
    table1 = {
        "ablation": [
            ("Wide IPKD - IPKD", "paradis-wide-ipkd", "paradis-ipkd", ">="),
            ("IPKD - no distillation", "paradis-ipkd", "paradis-no-kd", ">="),
            ("Wide IPKD-A (beta 0.1) - Wide IPKD", "paradis-wide-ipkd-a-0.1", "paradis-wide-ipkd", "<="),
            ("Wide IPKD-A (beta 1) - Wide IPKD", "paradis-wide-ipkd-a-1", "paradis-wide-ipkd", "<="),
        ],
        "quickstart": [
            ("Wide IPKD - IPKD", "wide-ipkd", "ipkd", ">="),
            ("Wide IPKD-A (beta 0.1) - Wide IPKD", "wide-ipkd-a", "wide-ipkd", "<="),
        ],
    }
    checks = []
    for key, pairs in table1.items():
        study = _study(results, key)
        if study is None:
            continue
        for what, a, b, op in pairs:
            ga, gb = study.group(a), study.group(b)
            checks += [Check(f"{key}: {what}", s, by_seed(ga, s), by_seed(gb, s), op, 0.0) for s in PARADIS_SWITCHES]
    return checks


@claim(
    "C5",
    "At equal multiply-adds per device, the distributed ParaDiS curve lies above US.",
    ("baselines",),
    "studies/paper/baselines_mobilenet_imagenet.yaml (Figure 4).",
)
def _c5(results: dict[str, StudyResult]) -> list[Check]:
    study = _study(results, "baselines")
    if study is None:
        return []
    paradis, us = study.group("paradis-wide-ipkd"), study.group("us-wide-ipkd")
    checks = []
    for s in DISTRIBUTABLE:
        row = _row(paradis, s) if paradis else None
        match = closest_in_macs(us, row["max_device_macs"]) if row and us else None
        if match:
            width, macs = match
            what = f"ParaDiS {s} ({_mmacs(row['max_device_macs'])} per device) - US {width} ({_mmacs(macs)})"
            checks.append(Check(what, s, by_seed(paradis, s), by_seed(us, width), ">=", 0.0))
    return checks


@claim(
    "C6",
    "For-free switches of the 8-way split are within 1 point of their trained neighbour (appendix F.1).",
    ("for_free",),
    "studies/paper/for_free_resnet50_imagenet.yaml (ResNet-50, 100 epochs; Figure 11).",
)
def _c6(results: dict[str, StudyResult]) -> list[Check]:
    study = _study(results, "for_free")
    if study is None:
        return []
    checks = []
    for g in study.groups_where("training.switches", "five"):
        rows = {row["switch"]: row for r in g.records for row in r.rows}
        trained = [row for row in rows.values() if row.get("trained")]
        for free in (row for row in rows.values() if not row.get("trained")):
            below = [row for row in trained if row["macs"] <= free["macs"]]
            if below:
                n = max(below, key=lambda row: row["macs"])["switch"]
                a, b = by_seed(g, free["switch"]), by_seed(g, n)
                checks.append(Check(f"{free['switch']} (for free) - {n} (trained)", free["switch"], a, b, ">=", -1.0))
    return checks


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
                checks.append(Check(what, row["switch"], by_seed(g, row["switch"]), by_seed(us, width), "<=", -4.0))
    return checks


# --- the report ------------------------------------------------------------------------------------
def _points(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}"


def _mean_of(values: SeedValues | dict[int, float], seeds: Sequence[int]) -> str:
    v = values.values if isinstance(values, SeedValues) else values
    return f"{100 * sum(v[k] for k in seeds) / len(seeds):.2f}" if seeds else "n/a"


def check_table(checks: Sequence[Check]) -> list[str]:
    """A row per check: both sides' mean accuracy over the paired seeds, their difference, its
    interval, the statement and the verdict."""
    lines = [
        "| comparison | switch | a (%) | b (%) | a - b (points) | 95 % interval | n | statement | verdict "
        "| seeds to decide |",
        "|---|---|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for c in checks:
        mean, lo, hi = c.interval()
        seeds = c.pairs.repeats
        interval = "n/a" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        cells = [c.what, c.switch, _mean_of(c.a, seeds), _mean_of(c.b, seeds), _points(mean), interval]
        verdict, need = c.verdict(), c.seeds_to_decide()
        decide = "" if verdict != "inconclusive" else str(need) if need else "> 1000" if len(seeds) > 1 else "?"
        cells += [str(len(seeds)), f"a - b {c.op} {c.bound:g}", verdict, decide]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _wall(seconds: float | None) -> str:
    return "not run" if seconds is None else f"{seconds / 60:.1f} min"


def study_section(result: StudyResult) -> list[str]:
    spec = result.spec
    head = f"### {result.key} (`studies/{result.path or result.key}.yaml`, experiment `{spec.tracking.experiment}`)"
    if result.run_id is None:
        return [head, "", "Not run in this tracking store (no finished run of the study).", ""]
    seeds = sorted({int(r.params.get("repeat", 0)) for r in result.records})
    done = sum(r.status == "TERMINATED" for r in result.records)
    lines = [
        head,
        "",
        f"Run `{result.run_id}`: {done} of {len(result.records)} trials finished, {len(seeds)} seed(s), "
        f"wall time {_wall(result.wall_s)}.",
        "",
    ]
    if result.records:
        lines += [summary_markdown(result.records), ""]
    return lines


SCALE_TEXT = {
    "reduced": "Each claim of the paper is checked at this project's reduced scale (Fashion-MNIST and the "
    "built-in photographs, 2 epochs, on CPU),",
    "paper": "Each claim of the paper is checked at the paper's scale (the studies of `studies/paper/`),",
}


def results_markdown(results: dict[str, StudyResult], command: str, scale: str = "reduced") -> str:
    """``docs/RESULTS.md``: the verdicts, each claim's checks, and every study's table and wall time."""
    verdicts = {key: claim_verdict(c.checks(results)) for key, c in CLAIMS.items()}
    lines = [
        "# Reproduction report",
        "",
        f"Generated by `{command}` from the studies' MLflow runs; do not edit by hand.",
        "",
        SCALE_TEXT[scale],
        "from the newest finished run of each study. A check is a statement",
        "about the difference of two accuracies in points, paired by seed; its verdict comes from the 95 %",
        "interval of the mean difference (Student's t over the seeds): *reproduced* when the whole interval",
        "satisfies the statement, *not reproduced* when none of it does, *inconclusive* otherwise or with",
        "fewer than two seeds. A claim is reproduced when all its checks are, not reproduced when any is not.",
        "*Seeds to decide*: for an inconclusive check, the fewest seeds whose interval would leave the bound",
        "out if the mean difference and its spread stayed as measured (an estimate, not a promise).",
        "Each claim names the study at the paper's scale that would decide it; run that with `--set repeats=3`",
        "(or more) and this command with `--scale paper`.",
        "",
        "| claim | statement | studies (wall time) | verdict |",
        "|---|---|---|---|",
    ]
    for key, c in CLAIMS.items():
        studies = ", ".join(f"{s} ({_wall(results[s].wall_s) if s in results else 'not read'})" for s in c.studies)
        lines.append(f"| {key} | {c.statement} | {studies} | **{verdicts[key]}** |")
    lines.append("")
    for key, c in CLAIMS.items():
        checks = c.checks(results)
        lines += [f"## {key}: {verdicts[key]}", "", c.statement, ""]
        if checks:
            lines += check_table(checks)
        else:
            missing = [s for s in c.studies if _study(results, s) is None]
            lines.append(f"No data: {', '.join(missing) or 'the studies'} not run in this tracking store.")
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
    from orchestration.spec import load_study as load_spec
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
