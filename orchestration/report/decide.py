"""Extra seeds where they decide, and only there: from the studies' first seeds (the pilot), each
inconclusive check's seeds to decide at the measured spread; the extra seeds per study that decide the
most checks within a time budget, at the study's measured time per seed; and the commands that train
them as new runs of the same configuration (``repeat_from``: no seed that exists is trained again).

The report pools those runs with the first ones and looks at the data a second time; the level is
split between the two looks (``ALPHA_LOOK``), so the second look does not inflate false verdicts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from orchestration.report.claims import CLAIMS
from orchestration.report.studies import StudyResult
from orchestration.report.verdicts import Check, check_verdicts
from paradis.util import parse_duration

MAX_EXTRA = 20  # seeds a study may add in one round


@dataclass(frozen=True)
class Undecided:
    """An inconclusive check and the seeds it would need (``None``: more than any affordable number)."""

    claim: str
    check: Check
    seeds: int | None


@dataclass
class Plan:
    extra: dict[str, int] = field(default_factory=dict)  # study -> seeds to add
    first_repeat: dict[str, int] = field(default_factory=dict)  # study -> the first new repeat index
    cost_s: float = 0.0
    decided: list[Undecided] = field(default_factory=list)  # the checks the extra seeds would decide
    left: list[Undecided] = field(default_factory=list)  # inconclusive checks left as they are


def undecided(results: dict[str, StudyResult]) -> list[Undecided]:
    """Every inconclusive check of every claim, with the seeds that would decide it."""
    out = []
    for key, claim in CLAIMS.items():
        checks = claim.checks(results)
        for check, verdict in zip(checks, check_verdicts(checks)):
            if verdict == "inconclusive":
                out.append(Undecided(key, check, check.seeds_to_decide(len(checks))))
    return out


def seeds_of(result: StudyResult) -> list[int]:
    return sorted({int(r.params.get("repeat", 0)) for r in result.records if r.status == "TERMINATED"})


def seconds_per_seed(result: StudyResult) -> float | None:
    n = len(seeds_of(result))
    return result.wall_s / n if result.wall_s and n else None


def plan(results: dict[str, StudyResult], budget_s: float, max_extra: int = MAX_EXTRA) -> Plan:
    """The extra seeds per study that decide the most inconclusive checks within ``budget_s`` (fewest
    seconds among equals), at each study's measured seconds per seed. A check is counted decided when
    every study it pairs reaches the seeds it needs."""
    todo = undecided(results)
    have = {k: len(seeds_of(r)) for k, r in results.items() if r.run_id}
    cost = {k: seconds_per_seed(r) for k, r in results.items() if r.run_id}
    options: dict[str, set[int]] = {k: {0} for k in have if cost[k]}
    for u in todo:
        if u.seeds is not None and all(s in options for s in u.check.studies):
            for s in u.check.studies:
                if 0 < u.seeds - have[s] <= max_extra:
                    options[s].add(u.seeds - have[s])
    studies = sorted(options)
    best: tuple[int, float, dict[str, int]] = (0, 0.0, dict.fromkeys(studies, 0))
    for combo in itertools.product(*(sorted(options[s]) for s in studies)):
        extra = dict(zip(studies, combo))
        seconds = sum(extra[s] * cost[s] for s in studies)
        if seconds > budget_s:
            continue
        n = sum(1 for u in todo if _decided_by(u, extra, have))
        if (n, -seconds) > (best[0], -best[1]):
            best = (n, seconds, extra)
    _, seconds, extra = best
    chosen = {s: k for s, k in extra.items() if k}
    decided = [u for u in todo if _decided_by(u, extra, have)]
    first = {s: max(seeds_of(results[s])) + 1 for s in chosen}
    return Plan(chosen, first, seconds, decided, [u for u in todo if u not in decided])


def _decided_by(u: Undecided, extra: dict[str, int], have: dict[str, int]) -> bool:
    studies = u.check.studies
    return u.seeds is not None and bool(studies) and all(s in extra and have[s] + extra[s] >= u.seeds for s in studies)


def commands(p: Plan, results: dict[str, StudyResult], python: str = "python") -> list[list[str]]:
    """``run_study.py`` for each study's extra seeds: new runs of the same configuration."""
    out = []
    for study, n in p.extra.items():
        out.append(
            [
                python,
                "orchestration/run_study.py",
                f"studies/{results[study].path or study}.yaml",
                "--set",
                f"repeats={n}",
                "--set",
                f"repeat_from={p.first_repeat[study]}",
            ]
        )
    return out


def plan_markdown(p: Plan, results: dict[str, StudyResult], budget_s: float) -> str:
    lines = [
        f"Extra seeds within a budget of {budget_s / 3600:.2f} h (estimated {p.cost_s / 60:.1f} min):",
        "",
        "| study | seeds now | extra seeds | repeats | minutes per seed |",
        "|---|---:|---:|---|---:|",
    ]
    for study, n in p.extra.items():
        per = seconds_per_seed(results[study]) or 0.0
        first = p.first_repeat[study]
        lines.append(f"| {study} | {len(seeds_of(results[study]))} | {n} | {first}-{first + n - 1} | {per / 60:.1f} |")
    if not p.extra:
        lines.append("| (none) | | 0 | | |")
    lines += ["", f"Checks they would decide: {len(p.decided)}; left inconclusive: {len(p.left)}."]
    for u in p.left:
        need = f"{u.seeds} seeds" if u.seeds else "more than 1000 seeds, or no spread to go by"
        lines.append(f"- {u.claim}: {u.check.what} ({u.check.switch}): would need {need}")
    return "\n".join(lines)


def parse_budget(text: str) -> float:
    """``2h``, ``90m``, ``45s`` or plain seconds, as seconds."""
    return parse_duration(text, "--budget")
