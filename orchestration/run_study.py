"""Run a study: ``python orchestration/run_study.py studies/quickstart.yaml`` (or ``paradis-study``).
``paradis-study list|status|show|export|compare`` read the studies of a store (orchestration/commands.py).

Locally this starts an embedded Ray; with ``RAY_ADDRESS`` set, or under ``ray job submit``, it joins
that cluster. Runs are tracked in MLflow (the spec's URI, else ``MLFLOW_TRACKING_URI``, else
``sqlite:///~/paradis/mlflow.db``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# ``python orchestration/run_study.py`` (and a ``ray job submit --working-dir`` copy) run this file
# as a script: make the project importable from the checkout it sits in.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from orchestration.commands import COMMANDS  # noqa: E402
from orchestration.preflight import check_resources, load_study, local_gpu_count  # noqa: E402
from orchestration.tracking.base import TrackingError  # noqa: E402
from paradis.config import ConfigError  # noqa: E402
from paradis.data import DataError, check_dataset  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="the study YAML file")
    p.add_argument("--smoke", action="store_true", help="scale the study down to a couple of minutes on a CPU")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of the spec")
    p.add_argument("--dry-run", action="store_true", help="print the resolved trials and exit without Ray")
    p.add_argument("--resume", action="store_true", help="continue the latest interrupted run of this study")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    return p


SCHEMA_FILE = _ROOT / "docs" / "study.schema.json"


def schema_text() -> str:
    """The JSON schema of a study file (from the pydantic models), as ``docs/study.schema.json`` holds it."""
    import json

    from orchestration.spec import StudySpec

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **StudySpec.model_json_schema()}
    schema["title"] = "ParaDiS study"
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["schema"]:  # `paradis-study schema`: a spec file named so is ./schema
        if len(argv) > 1:
            print("run_study.py: error: schema takes no arguments", file=sys.stderr)
            return 2
        sys.stdout.write(schema_text())
        return 0
    if argv[:1] and argv[0] in COMMANDS:  # list, status, show, export, compare (orchestration/commands.py)
        return _command(argv)
    args = build_parser().parse_args(argv)
    try:
        spec = load_study(args.spec, overrides=args.set, smoke=args.smoke)
    except ConfigError as err:
        return _error(err)
    if args.dry_run:
        from orchestration.study import dry_run_text

        print(dry_run_text(spec))
        return 0
    try:
        if not (args.address or os.environ.get("RAY_ADDRESS")):  # a remote cluster is checked once joined
            check_resources(spec, args.spec, local_gpu_count(), os.cpu_count())
        uri = _preflight(spec, args.spec, args.resume)
    except ConfigError as err:
        return _error(err)
    except (DataError, TrackingError) as err:
        return _error(err, args.spec)
    except LookupError as err:  # NothingToResume
        return _error(err)
    from orchestration.resume import ChangedSpec, NothingToResume, UnsafeResume
    from orchestration.study import run_study

    spec_text = Path(args.spec).read_text(errors="replace")
    try:
        return run_study(spec, spec_text, args.spec, uri=uri, resume=args.resume, address=args.address)
    except (NothingToResume, UnsafeResume, ChangedSpec, ConfigError) as err:
        return _error(err)


def _command(argv: list[str]) -> int:
    from orchestration.commands import main as command_main
    from paradis.util import first_line

    try:
        return command_main(argv)
    except (ConfigError, TrackingError, ValueError, OSError) as err:
        return _error(err)
    except Exception as err:  # the store answered something unexpected (MlflowException, a driver's error)
        return _error(RuntimeError(f"{type(err).__name__}: {first_line(err)}"))


def _preflight(spec, source: str, resume: bool = False) -> str:
    """Check the storage path, the data set, every trial's switches in its model, the searcher, the
    tracking store and the search's Optuna storage before anything starts; the tracking URI."""
    import logging

    from orchestration.preflight import check_optuna_storage, check_search, check_storage, check_switches
    from orchestration.resume import NothingToResume
    from orchestration.tracking import check_tracking, resolve_tracking_uri

    uri = resolve_tracking_uri(spec.tracking.uri)
    if resume and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise NothingToResume(f"no run of study {spec.name!r} to resume: the store {uri} does not exist")
    check_storage(spec, source)
    check_dataset(spec.data.name, spec.data.root, spec.data)
    check_switches(spec, source)
    check_search(spec, source)
    import mlflow.tracking  # noqa: F401  (its import sets its logger's level; ours is set after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    check_tracking(uri)
    check_optuna_storage(spec, source, uri)  # after check_tracking, which makes the sqlite store's folder
    return uri


def _error(err: Exception, source: str | None = None) -> int:
    """One line on stderr, exit status 2: a usage error, never a traceback."""
    text = " ".join(str(err).split())  # one line, however the message was built
    text = text if len(text) <= 1000 else text[:985] + f"... ({len(text)} chars)"
    print(f"run_study: error: {f'{source}: ' if source else ''}{text}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
