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

import math
from collections.abc import Sequence
from typing import Any

from orchestration.report.claims import CLAIMS
from orchestration.report.curves import convergence, convergence_line
from orchestration.report.seeds import (
    SeedValues,
    summary_markdown,
)
from orchestration.report.studies import StudyResult, finished, paper_results
from orchestration.report.study import code_span, inline_text, markdown_row
from orchestration.report.verdicts import Check, check_verdicts, claim_verdict


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
    where = code_span(f"studies/{result.path or result.key}.yaml")
    head = f"### {inline_text(result.key)} ({where}, experiment {code_span(result.experiment)})"
    if result.run_id is None:
        return [head, "", "Not run in this tracking store (no finished run of the study).", ""]
    seeds = sorted({int(r.params.get("repeat", 0)) for r in result.records})
    done = sum(r.status == "TERMINATED" for r in result.records)
    runs = result.run_ids or [result.run_id]
    named = (
        f"Run {code_span(runs[0])}" if len(runs) == 1 else "Runs " + ", ".join(map(code_span, runs)) + " (seeds pooled)"
    )
    lines = [
        head,
        "",
        f"{named}: {done} of {len(result.records)} trials finished, {len(seeds)} seed(s), "
        f"wall time {_wall(result.wall_s)}.",
        "",
    ]
    if result.configuration:
        lines += [scale_line(result.configuration), ""]
    if any(r.curves for r in result.records):
        # from the curves themselves, every seed pooled, by today's rule (not the verdict stored with each run)
        lines += [convergence_line(convergence(result.records)), ""]
    elif result.convergence:
        worst = max(
            (c for c in result.convergence if c.get("worst")),
            key=lambda c: c["trials"][c["worst"]]["gain"],
            default=result.convergence[0],
        )
        lines += [convergence_line(worst), ""]
    if result.records:
        lines += [summary_markdown(result.records), ""]
    return lines


def scale_line(configuration: dict[str, Any]) -> str:
    """The scale a study ran at, from its resolved spec: model, data, epochs and optimizer."""

    def section(mapping: Any, key: str) -> dict[str, Any]:
        value = mapping.get(key) if isinstance(mapping, dict) else None
        return value if isinstance(value, dict) else {}

    def shown(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else inline_text(value)

    data, training = section(configuration, "data"), section(configuration, "training")
    optimizer = section(training, "optimizer")
    images = shown(data["train_subset"]) if data.get("train_subset") else "all"
    tested = f"{shown(data['test_subset'])} test images" if data.get("test_subset") else "the full test set"
    return (
        f"Scale: {shown(section(configuration, 'model').get('name'))} on {images} {shown(data.get('name'))} "
        f"training images, {shown(training.get('epochs'))} epochs, batch {shown(training.get('batch_size'))}, "
        f"learning rate {shown(optimizer.get('lr'))} ({shown(section(training, 'schedule').get('kind'))}), "
        f"weight decay {shown(optimizer.get('weight_decay'))} on {shown(optimizer.get('decay', 'all'))} "
        f"parameters; {tested}."
    )


SCALE_TEXT = {
    "reduced": "Each claim of the paper is checked at this project's reduced scale (on CPU; each study's "
    "section gives its scale, docs/SCALE.md why),",
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
            missing = [s for s in c.studies if finished(results, s) is None]
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
