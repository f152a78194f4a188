"""``python -m orchestration.report results --tracking-uri URI``: write the reproduction report
(``docs/RESULTS.md``) from the reduced studies' runs in an MLflow store."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from orchestration.report.results import REDUCED_STUDIES

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("results", help="the reproduction report: each claim's checks and verdict")
    r.add_argument("--tracking-uri", required=True, help="the MLflow store the studies ran in")
    r.add_argument("--output", help="where to write the report (docs/RESULTS.md; at --scale paper RESULTS_paper.md)")
    r.add_argument("--studies-dir", default=str(ROOT / "studies"), help="the folder of the study files")
    r.add_argument(
        "--scale",
        choices=("reduced", "paper"),
        default="reduced",
        help="read the reduced studies (studies/*.yaml) or those at the paper's scale (studies/paper/)",
    )
    r.add_argument("--study", action="append", choices=REDUCED_STUDIES, help="only these studies (default: all nine)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per table otherwise
    from orchestration.report.results import load_results, results_markdown
    from orchestration.tracking import TrackingError, check_tracking
    from paradis.config import ConfigError

    uri = args.tracking_uri
    default = "RESULTS.md" if args.scale == "reduced" else f"RESULTS_{args.scale}.md"
    output = Path(args.output or ROOT / "docs" / default)
    try:
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
            raise TrackingError(f"no MLflow store at {uri}: the file does not exist")
        if not output.parent.is_dir():
            raise OSError(f"--output {str(output)!r}: its folder does not exist")
        check_tracking(uri)
        keys = args.study or REDUCED_STUDIES
        results = load_results(uri, Path(args.studies_dir), keys, args.scale)
        command = "python -m orchestration.report results --tracking-uri " + shlex.quote(_shown(uri))
        command += "" if args.scale == "reduced" else f" --scale {args.scale}"
        text = results_markdown(results, command, args.scale)
        output.write_text(text)
    except (ConfigError, TrackingError, OSError) as err:
        return _error(err)
    print(
        f"report: wrote {output} ({sum(r.run_id is not None for r in results.values())} of {len(results)} studies run)"
    )
    return 0


def _shown(uri: str) -> str:
    """The store as the report names it: a local sqlite file by its name only (the path is this machine's)."""
    return f"sqlite:///.../{Path(uri).name}" if uri.startswith("sqlite:///") else uri


def _error(err: Exception) -> int:
    text = " ".join(str(err).split())
    print(f"report: error: {text[:1000]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
