"""The model registry for deploy: ``register`` an export as an MLflow model version, and read one back
with ``--model-uri models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) in ``export``, ``plan`` and
``serve-bench``.

A version's artifacts are the export folder itself (``manifest.json``, ``device{i}.pt``, ...), logged
to the trial run it came from (or to a new run); no MLflow model flavour, so nothing is pickled. The
version's tags say what it is (``{tag_names.SWITCH}``, per-device multiply-adds and parameters, accuracy,
formats) and record the SHA-256 of its manifest: a download is refused unless the manifest has that
digest and every file the digest its manifest records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import orchestration.tracking.tag_names as tag_names
from orchestration.deploy.checks import CommandError, edge_options
from orchestration.deploy.sources import load_source
from paradis.deploy import ExportError, Manifest, export_switch, read_manifest, verify_export
from paradis.deploy.files import quote
from paradis.deploy.manifest import MANIFEST_NAME, named_files
from paradis.util import first_line

MODEL_URI = re.compile(
    r"models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]{0,99})(?:/(?P<version>[1-9][0-9]{0,9})|@(?P<alias>[A-Za-z0-9_\-]{1,100}))"
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
ALIAS = re.compile(r"[A-Za-z0-9_\-]{1,100}")
DEFAULT_EXPERIMENT = "paradis-deploy"


def model_uri_arg(text: str) -> str:
    """An argparse ``type``: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    if not MODEL_URI.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{quote(text)} is not models:/NAME/VERSION or models:/NAME@ALIAS")
    return text


def name_arg(text: str) -> str:
    """An argparse ``type``: a registered model name (letters, digits, ``_.-``; at most 100)."""
    if not NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a model name (letters, digits, _ . -)")
    return text


def alias_arg(text: str) -> str:
    """An argparse ``type``: an alias MLflow accepts (not ``latest``, not ``v<digits>``)."""
    if not ALIAS.fullmatch(text) or text.lower() == "latest" or re.fullmatch(r"[vV][0-9]+", text):
        raise argparse.ArgumentTypeError(f"{quote(text)} is not an alias (letters, digits, _ -; not latest or v1)")
    return text


def _tracker(args: argparse.Namespace, experiment: str = ""):
    from orchestration.tracking import open_tracker, resolve_tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line on stderr, or none
    uri = resolve_tracking_uri(args.tracking_uri)
    return open_tracker(uri, experiment=experiment), uri


# --- reading a version -----------------------------------------------------------------------------
def fetch_model(args: argparse.Namespace, uri: str, dest: str) -> tuple[Path, Manifest, dict[str, str]]:
    """Download version ``uri`` into ``dest`` and check it: the manifest's SHA-256 against the version's
    tag, then every file against the manifest. The local folder, its manifest and the version's tags."""
    tracker, store = _tracker(args)
    try:
        local, info = tracker.resolve_model_uri(uri, dest)
    except Exception as err:  # MLflow raises its own types for a missing model, version or alias
        raise CommandError(f"{uri} cannot be read from {store}: {first_line(err)}") from None
    digest = info.get(tag_names.MANIFEST_SHA256)
    if not digest:
        raise CommandError(f"{uri} has no {tag_names.MANIFEST_SHA256} tag: it was not registered by deploy register")
    folder = Path(local)
    manifest = verify_export(folder, read_manifest(folder, expected_sha256=digest))
    return folder, manifest, info


def source_description(uri: str, info: dict[str, str]) -> str:
    return f"{uri} (version {info['version']} of {info['name']}, run {info.get('run_id') or '?'})"


# --- register --------------------------------------------------------------------------------------
def version_tags(m: Manifest, manifest_sha256: str, source: str) -> dict[str, str]:
    """What a version is, for the registry's UI and for the checks of a later download."""
    kinds = ["pt"] + (["pt2"] if m.devices[0].program_file else []) + list(m.devices[0].artifacts)
    return {
        tag_names.SWITCH: m.switch,
        "paradis.model": m.model["name"],
        "paradis.devices": str(len(m.devices)),
        "paradis.device_macs": json.dumps([d.macs for d in m.devices]),
        "paradis.device_params": json.dumps([d.params for d in m.devices]),
        "paradis.max_device_macs": str(m.max_device_macs),
        "paradis.accuracy": "unknown" if m.accuracy is None else f"{m.accuracy:.6f}",
        "paradis.formats": ",".join(kinds),
        "paradis.source": source[:5000],
        tag_names.MANIFEST_SHA256: manifest_sha256,
    }


def register_command(args: argparse.Namespace) -> int:
    """``register``: export the switch to a temporary folder and register it as a model version."""
    edge = edge_options(args)
    trained = load_source(args)
    tracker, store = _tracker(args, args.experiment)
    with tempfile.TemporaryDirectory(prefix="paradis-register-") as tmp:
        out = Path(tmp) / "export"
        m = export_switch(trained, args.switch, out, programs=not args.no_programs, edge=edge)
        digest = hashlib.sha256((out / MANIFEST_NAME).read_bytes()).hexdigest()
        run_id = args.run_id if args.run_id and not args.new_run else _new_run(tracker, args)
        path = f"deploy/{args.name}/{m.parsed_switch.slug}-{digest[:12]}"
        try:
            info = tracker.register_export(
                run_id, str(out), args.name, artifact_path=path, tags=version_tags(m, digest, trained.source),
                alias=args.alias, description=f"switch {m.switch} of {trained.source}",
            )  # fmt: skip
        except Exception as err:
            raise CommandError(f"{args.name} cannot be registered in {store}: {first_line(err)}") from None
        if run_id != args.run_id:
            tracker.finish(run_id, "FINISHED")
    alias = f", alias {args.alias}" if args.alias else ""
    print(
        f"registered switch {m.switch} of {trained.source} as {info['name']} version {info['version']}{alias}: "
        f"models:/{info['name']}/{info['version']} ({len(named_files(m)) + 1} files, run {run_id}, {store})"
    )
    return 0


def _new_run(tracker: Any, args: argparse.Namespace) -> str:
    tags = {tag_names.ROLE: "deploy", tag_names.SOURCE_RUN: args.run_id or "", tag_names.SWITCH: args.switch}
    try:
        return tracker.start_run(f"deploy {args.name} {args.switch}", tags)
    except Exception as err:
        raise CommandError(f"a run for {args.name} cannot be created: {first_line(err)}") from None


def check_version_switch(args: argparse.Namespace, manifest: Manifest, what: str) -> None:
    """A ``--switch`` given beside ``--model-uri`` must be the version's."""
    given = getattr(args, what.lstrip("-").replace("-", "_"), None)
    given = [given] if isinstance(given, str) else given or []
    for s in given:
        if s != manifest.switch:
            raise ExportError(f"{args.model_uri} holds switch {manifest.switch}, not {s}")
