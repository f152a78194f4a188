"""Resuming a study: its newest run's experiment folder, checked before Ray restores (and so unpickles)
anything in it, and the spec compared with the one the run trained with."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestration.spec import ResourcesSpec, StudySpec
from orchestration.tracking import Tracker, tag_names
from paradis.config.changes import RUN_RESUMABLE, config_changes, describe_changes

STATE_FILE = "paradis_study.json"


class NothingToResume(LookupError):
    """``--resume`` found no interrupted run of the study."""


class ChangedSpec(ValueError):
    """``--resume`` with a spec that would train the rest of the study otherwise."""


class UnsafeResume(PermissionError):
    """The experiment folder to resume is not one this study wrote, or others could have changed it."""


def _check_owned(path: Path) -> None:
    """``path`` and everything under it: no symbolic link, owned by this user, not writable by group
    or others (Ray unpickles files of an experiment folder when it restores it)."""
    uid = os.getuid()
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        if p.is_symlink():
            raise UnsafeResume(f"{p} is a symbolic link; refusing to resume from {path}")
        if st.st_uid != uid:
            raise UnsafeResume(f"{p} is owned by uid {st.st_uid}, not by this user ({uid}); refusing to resume")
        if st.st_mode & 0o022:
            raise UnsafeResume(f"{p} is writable by group or others (mode {st.st_mode & 0o777:o}); refusing to resume")


def resumable_experiment(spec: StudySpec, tracker: Tracker) -> tuple[Path, str]:
    """The experiment folder and parent run of this study's newest run, recorded on the run itself,
    checked before Ray starts: inside the spec's storage path, written by this study and this user."""
    found = tracker.latest_study_run(spec.name)
    if found is None:
        raise NothingToResume(f"no run of study {spec.name!r} in the tracking store to resume")
    run_id, tags = found
    recorded = tags.get(tag_names.EXPERIMENT_DIR)
    if not recorded:
        raise NothingToResume(f"the newest run {run_id} of study {spec.name!r} records no experiment folder")
    exp_dir, storage = Path(recorded), spec.resolved_storage_path()
    if exp_dir.resolve() != exp_dir or storage not in exp_dir.parents:
        raise UnsafeResume(f"run {run_id} records {exp_dir}, which is not inside the storage path {storage}")
    if not (exp_dir / "tuner.pkl").is_file() or not (exp_dir / STATE_FILE).is_file():
        raise NothingToResume(f"{exp_dir} (of run {run_id}) holds no interrupted study to resume")
    _check_owned(exp_dir)
    state = json.loads((exp_dir / STATE_FILE).read_text())
    if state.get("parent_run_id") != run_id:
        raise UnsafeResume(f"{exp_dir / STATE_FILE} names run {state.get('parent_run_id')!r}, not {run_id}")
    check_unchanged(spec, tracker, run_id)
    return exp_dir, run_id


# Keys of a study a resume may change: what is reported, what each worker gets and how many trials run
# at once, how failures are retried; anything else would train the rest of the study under other values
# than its runs record (resources.workers_per_trial does: the global batch is the batch times workers).
STUDY_RESUMABLE = (
    *RUN_RESUMABLE,
    "description",
    "compare",
    "failure.",
    *(f"resources.{k}" for k in ResourcesSpec.model_fields if k != "workers_per_trial"),
)


def check_unchanged(spec: StudySpec, tracker: Tracker, run_id: str) -> None:
    """Refuse to resume study run ``run_id`` with a spec that trains otherwise than the one it recorded
    (``spec/resolved.json``), in one line naming the differing keys."""
    recorded = tracker.load_text(run_id, "spec/resolved.json")
    if recorded is None:
        raise UnsafeResume(f"run {run_id} records no resolved spec (spec/resolved.json): its spec cannot be compared")
    changes = config_changes(json.loads(recorded), spec.model_dump(mode="json"), STUDY_RESUMABLE)
    if changes:
        raise ChangedSpec(
            f"the spec differs from the one study run {run_id} trained with ({describe_changes(changes)}); "
            "undo the change to resume, or start a new run without --resume"
        )


def _state(exp_dir: Path) -> dict:
    """The study's state file (``{}`` where it is missing or is no JSON object)."""
    try:
        state = json.loads((exp_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def tuning_seconds(exp_dir: Path) -> float:
    """The seconds the study's earlier tuning loops used (recorded in its state file at the end of each):
    Tune's time budget goes on from where a resumed study left it."""
    used = _state(exp_dir).get("tuning_seconds", 0.0)
    return float(used) if isinstance(used, (int, float)) and not isinstance(used, bool) and 0 <= used < 1e9 else 0.0


def record_tuning_seconds(exp_dir: Path, seconds: float) -> None:
    state = _state(exp_dir)
    if state:
        (exp_dir / STATE_FILE).write_text(json.dumps({**state, "tuning_seconds": round(seconds, 3)}))
