"""``python -m orchestration.report``: the reproduction report and what feeds it.

- ``results --tracking-uri URI`` (or ``--from docs/results``): write ``docs/RESULTS.md`` from the reduced
  studies' runs in an MLflow store, or from the study-results files alone.
- ``export --tracking-uri URI``: write each study's results to ``docs/results/<study>.json``.
- ``decide --tracking-uri URI --budget 2h``: run the extra seeds that decide inconclusive checks within
  the budget, then write the report (``--dry-run``: only print the plan)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from orchestration.report.studies import REDUCED_STUDIES

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("results", help="the reproduction report: each claim's checks and verdict")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--tracking-uri", help="the MLflow store the studies ran in")
    source.add_argument("--from", dest="from_dir", help="a folder of study-results files (docs/results)")
    r.add_argument("--output", help="where to write the report (docs/RESULTS.md; at --scale paper RESULTS_paper.md)")
    e = sub.add_parser("export", help="each study's results as docs/results/<study>.json")
    e.add_argument("--tracking-uri", required=True, help="the MLflow store the studies ran in")
    e.add_argument("--output", default=str(ROOT / "docs" / "results"), help="the folder to write to")
    d = sub.add_parser("decide", help="run the extra seeds that decide inconclusive checks, then the report")
    d.add_argument("--tracking-uri", required=True, help="the MLflow store the studies ran in")
    d.add_argument("--budget", required=True, help="the time the extra seeds may take: 2h, 90m, 3600")
    d.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    d.add_argument("--output", help="where to write the report (docs/RESULTS.md)")
    for q in (r, e, d):
        q.add_argument("--studies-dir", default=str(ROOT / "studies"), help="the folder of the study files")
        q.add_argument(
            "--scale",
            choices=("reduced", "paper"),
            default="reduced",
            help="read the reduced studies (studies/*.yaml) or those at the paper's scale (studies/paper/)",
        )
        q.add_argument("--study", action="append", choices=REDUCED_STUDIES, help="only these studies (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per table otherwise
    from orchestration.tracking import TrackingError
    from paradis.config import ConfigError

    try:
        return {"results": _results, "export": _export, "decide": _decide}[args.command](args)
    except (ConfigError, TrackingError, OSError, ValueError) as err:
        return _error(err)


def _store(args):
    """The studies' results from the store ``--tracking-uri``."""
    from orchestration.report.studies import load_results
    from orchestration.tracking import TrackingError, check_tracking

    uri = args.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise TrackingError(f"no MLflow store at {uri}: the file does not exist")
    check_tracking(uri)
    return load_results(uri, Path(args.studies_dir), args.study or REDUCED_STUDIES, args.scale)


def _output(args) -> Path:
    default = "RESULTS.md" if args.scale == "reduced" else f"RESULTS_{args.scale}.md"
    output = Path(args.output or ROOT / "docs" / default)
    if not output.parent.is_dir():
        raise OSError(f"--output {str(output)!r}: its folder does not exist")
    return output


def _results(args) -> int:
    from orchestration.report.exported import read_exports
    from orchestration.report.results import results_markdown

    output = _output(args)
    if args.from_dir:
        results = read_exports(Path(args.from_dir), args.scale)
        if args.study:
            results = {k: v for k, v in results.items() if k in args.study}
        command = "python -m orchestration.report results --from " + shlex.quote(_relative(args.from_dir))
    else:
        results = _store(args)
        command = "python -m orchestration.report results --tracking-uri " + shlex.quote(_shown(args.tracking_uri))
    command += "" if args.scale == "reduced" else f" --scale {args.scale}"
    output.write_text(results_markdown(results, command, args.scale))
    ran = sum(r.run_id is not None for r in results.values())
    print(f"report: wrote {output} ({ran} of {len(results)} studies run)")
    return 0


def _export(args) -> int:
    from orchestration.report.exported import write_exports

    folder = Path(args.output)
    if not folder.is_dir():
        raise OSError(f"--output {str(folder)!r}: not a folder")
    written = write_exports(_store(args).values(), folder)
    print(f"report: wrote {len(written)} study-results file(s) to {folder}: {', '.join(p.name for p in written)}")
    return 0


def _decide(args) -> int:
    from orchestration.report.decide import commands, parse_budget, plan, plan_markdown

    budget = parse_budget(args.budget)
    output = _output(args)
    results = _store(args)
    chosen = plan(results, budget)
    print(plan_markdown(chosen, results, budget))
    todo = commands(chosen, results, sys.executable)
    for cmd in todo:
        print("report: " + ("would run" if args.dry_run else "running") + ": " + shlex.join(cmd[1:]))
    if args.dry_run:
        return 0
    for cmd in todo:
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            raise OSError(f"{shlex.join(cmd[1:])} failed: the report is left as it was")
    args.from_dir = None
    args.output = str(output)
    return _results(args)


def _relative(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def _shown(uri: str) -> str:
    """The store as the report names it: a local sqlite file by its name only (the path is this machine's)."""
    return f"sqlite:///.../{Path(uri).name}" if uri.startswith("sqlite:///") else uri


def _error(err: Exception) -> int:
    text = " ".join(str(err).split())
    print(f"report: error: {text[:1000]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
