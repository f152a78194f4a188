"""Hardening of the study runner and ``paradis train``: inputs small on disk and huge in memory are
refused with the limit named, nothing is lost to a bad output place, resume runs only what this study
wrote, and every refusal is one line (issue: no code from a file the service did not write)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.preflight import load_study
from orchestration.tracking import TrackingError, resolve_tracking_uri
from paradis.config import ConfigError, RunConfig, apply_overrides, validate
from paradis.switch import parse_switch

ROOT = Path(__file__).resolve().parents[2]
HEAD = "name: x\nmodel: {name: mobilenet_v1_small}\ndata: {name: synthetic}\n"


def _cli(args, tmp_path, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(PARADIS_HOME=str(tmp_path / "home"), RAY_TMPDIR=str(tmp_path / "ray"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    return proc, time.perf_counter() - start


def _one_line(proc, prog: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


# --- small on disk, huge in memory -------------------------------------------------------------------
def test_yaml_alias_expansion_is_refused_quickly(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(HEAD + bomb)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"more than 100000 values once aliases are expanded|YAML aliases"):
        load_study(path)
    assert time.perf_counter() - start < 1.0


def test_many_aliases_are_refused(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(HEAD + "description: &d hello\n" + "".join(f"k{i}: *d\n" for i in range(150)))
    with pytest.raises(ConfigError, match="more than 100 YAML aliases"):
        load_study(path)


def test_switch_repeat_counts_are_bounded():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="more than 1024 sub-networks"):
        parse_switch("[20000000x0.00000005]")
    with pytest.raises(ValueError, match="more than 1024 sub-networks"):
        parse_switch(f"[{2**70}x0.5]")
    assert time.perf_counter() - start < 0.1


def test_a_grid_of_ten_million_trials_is_refused_before_it_is_expanded(tmp_path):
    keys = ("beta", "wide_factor", "epochs", "batch_size", "optimizer.lr", "optimizer.momentum")  # 10 ** 6 points
    space = ", ".join(f"training.{k}: {{grid: [{', '.join(str(v) for v in range(1, 11))}]}}" for k in keys)
    many = ", ".join(f"v{i}: {{training.beta: 0.{i}}}" for i in range(10))
    path = tmp_path / "grid.yaml"
    path.write_text(HEAD + f"search: {{kind: grid, space: {{{space}}}, variants: {{{many}}}}}\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="10000000 trials, more than the limit of 10000"):
        load_study(path)
    assert time.perf_counter() - start < 1.0


def test_a_large_spec_is_refused_by_size(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + "description: " + "x" * 2_000_000 + "\n")
    with pytest.raises(ConfigError, match="larger than 1000000 bytes"):
        load_study(path)


def test_messages_quote_a_couple_of_hundred_characters_at_most(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("name: x\nmodel: {name: " + "m" * 500_000 + "}\ndata: {name: synthetic}\n")
    proc, _ = _cli([str(ROOT / "orchestration/run_study.py"), str(path)], tmp_path)
    line = _one_line(proc, "run_study")
    assert len(line) < 1200


# --- careless values -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"training": {"epochs": True}}, "training.epochs: expected a number, got True"),
        ({"training": {"batch_size": False}}, "training.batch_size: expected a number"),
        ({"evaluation": {"calibration_batches": True}}, "evaluation.calibration_batches: expected a number"),
        ({"training": {"optimizer": {"lr": True}}}, "training.optimizer.lr: expected a number"),
    ],
)
def test_true_and_false_are_no_numbers(data, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(RunConfig, data, "run.yaml")


def test_duplicate_keys_in_a_set_flow_mapping_are_refused():
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        apply_overrides({}, ["search.variants={a: {training.beta: 0.1}, a: {training.beta: 0.2}}"])


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("sqlite:///x.db", "is a relative path"),
        ("sqlite://", "in-memory store"),
        ("sqlite:///:memory:", "in-memory store"),
    ],
)
def test_tracking_stores_that_keep_nothing_or_follow_the_working_directory_are_refused(uri, needle):
    with pytest.raises(TrackingError, match=needle):
        resolve_tracking_uri(uri)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("training: {switches: ['[1.0]', '[0.01, 0.99]']}\n", "width 0.01 of sub-network 0 gives no whole channel"),
        ("resources: {cpus_per_worker: 64}\n", "resources.cpus_per_worker: a trial needs 64 CPU(s)"),
        ("storage_path: /etc/passwd\n", "storage_path: /etc/passwd is a file"),
        ("tracking: {uri: 'sqlite:///relative.db'}\n", "relative path"),
        ("training: [1, 2]\n", "training: Input should be a valid dictionary"),
    ],
)
def test_the_runner_refuses_before_ray_starts(tmp_path, extra, needle):
    path = tmp_path / "study.yaml"
    path.write_text(HEAD + extra)
    proc, seconds = _cli([str(ROOT / "orchestration/run_study.py"), str(path), "--smoke"], tmp_path)
    line = _one_line(proc, "run_study")
    assert needle in line, line
    assert not (tmp_path / "ray").exists() and seconds < 15


OPTUNA = "search: {kind: optuna, samples: 1, space: {training.beta: {uniform: [0.0, 1.0]}}}\n"


@pytest.mark.parametrize(
    ("storage", "needle"),
    [
        ("bogus://nowhere", "'bogus://nowhere' cannot be opened: Can't load plugin: sqlalchemy.dialects:bogus"),
        ("sqlite:////nonexistent/folder/optuna.db", "cannot be opened: (sqlite3.OperationalError) unable to open"),
        ("postgresql://u@127.0.0.1:9/db", "cannot be opened: (psycopg.OperationalError) connection failed"),
        ("sqlite:///optuna.db", "not an sqlite file at an absolute path"),
        ("MLFLOW", "is the MLflow tracking store's database"),
        ("MLFLOW?timeout=5", "is the MLflow tracking store's database"),
    ],
)
def test_an_optuna_storage_that_cannot_work_is_refused_before_ray(tmp_path, storage, needle):
    """A search's Optuna storage is opened before Ray starts: a bad one is one line, not a FAILED study
    after its trials trained; the MLflow store's own database is refused before Optuna adds its tables."""
    import sqlite3

    db = tmp_path / "mlflow.db"
    storage = storage.replace("MLFLOW", f"sqlite:///{db}")
    path = tmp_path / "study.yaml"
    path.write_text(HEAD + OPTUNA.replace("samples: 1", f"samples: 1, storage: '{storage}'"))
    path.write_text(path.read_text() + f"tracking: {{uri: 'sqlite:///{db}'}}\n")
    proc, seconds = _cli([str(ROOT / "orchestration/run_study.py"), str(path), "--smoke"], tmp_path)
    line = _one_line(proc, "run_study")
    assert f"search.storage: '{storage}'" in line and needle in line, line
    assert not (tmp_path / "ray").exists() and seconds < 30
    if db.exists():  # MLflow's store, untouched by Optuna
        tables = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
        assert "experiments" in tables and "studies" not in tables and "trials" not in tables


def test_a_failing_optuna_recorder_keeps_the_study_going(capsys, tmp_path):
    """The Optuna copy of a search is for browsing: a storage that fails mid-study warns and never raises
    into Tune (which would end the study and lose its trained trials)."""
    from types import SimpleNamespace

    from orchestration.search import optuna_recorder

    path = tmp_path / "study.yaml"
    path.write_text(HEAD + OPTUNA)
    spec = load_study(path)
    db = tmp_path / "optuna.db"
    recorder = optuna_recorder(spec, f"sqlite:///{db}", "s")
    trial = SimpleNamespace(trial_id="t1", last_result={"acc/target": 0.5}, config={"training.beta": 0.3})
    recorder.on_trial_complete(0, [], trial)
    import optuna

    recorded = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
    assert [(t.user_attrs["tune_trial_id"], t.values) for t in recorded] == [("t1", [0.5])]
    db.write_bytes(b"no longer a database " * 100)
    recorder.on_trial_complete(1, [], SimpleNamespace(**{**vars(trial), "trial_id": "t2"}))
    recorder.on_trial_error(2, [], SimpleNamespace(**{**vars(trial), "trial_id": "t3"}))
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if line.startswith("[paradis]"))
    assert "warning: trial t2 not recorded in the Optuna study s: " in err, err
    assert "warning: trial t3 not recorded in the Optuna study s: " in err, err
    assert "file is not a database" in err and len(err.strip().splitlines()) == 2, err


def test_non_utf8_spec_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + "description: caf\xe9\n".encode("latin-1"))
    proc, _ = _cli([str(ROOT / "orchestration/run_study.py"), str(path)], tmp_path)
    assert "not UTF-8 text" in _one_line(proc, "run_study")


# --- work never lost -----------------------------------------------------------------------------------
def test_paradis_train_checks_its_output_before_training(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("precious")
    start = time.perf_counter()
    proc, _ = _cli(
        [
            "-m",
            "paradis",
            "train",
            "--set",
            "data.name=synthetic",
            "--set",
            "training.epochs=50",
            "--output",
            str(blocker),
        ],
        tmp_path,
    )
    assert "--output" in _one_line(proc, "paradis train") and "is a file" in proc.stderr
    assert blocker.read_text() == "precious" and time.perf_counter() - start < 20


@pytest.mark.parametrize("size", [["0", "0", "0"], ["1", "-28", "28"], ["1", "28", "99999999"], ["a", "b", "c"]])
def test_paradis_profile_refuses_impossible_input_sizes(tmp_path, size):
    proc, _ = _cli(["-m", "paradis", "profile", "mobilenet_v1_small", "--input-size", *size], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--input-size" in proc.stderr


# --- resume runs only what this study wrote -------------------------------------------------------------
def test_resume_with_nothing_to_resume_says_so_before_ray_starts(tmp_path):
    proc, seconds = _cli([str(ROOT / "orchestration/run_study.py"), "studies/quickstart.yaml", "--resume"], tmp_path)
    assert "no run of study 'quickstart' to resume" in _one_line(proc, "run_study")
    assert not (tmp_path / "ray").exists() and seconds < 15


def test_a_planted_experiment_folder_is_never_restored(tmp_path):
    """A future-dated folder planted under the storage path, with a tuner.pkl that would run code when
    unpickled, is ignored: resume follows only the folder the study's own run records."""
    from orchestration.resume import UnsafeResume, resumable_experiment
    from orchestration.tracking import open_tracker

    os.environ["PARADIS_HOME"] = str(tmp_path / "home")
    try:
        spec = load_study(ROOT / "studies/quickstart.yaml")
        storage = spec.resolved_storage_path()
        planted = storage / "quickstart-29991231-235959"
        planted.mkdir(parents=True)
        marker = tmp_path / "pwned"
        (planted / "tuner.pkl").write_bytes(
            b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
        )  # a pickle that runs a shell command
        (planted / "paradis_study.json").write_text(json.dumps({"parent_run_id": "x"}))
        uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
        tracker = open_tracker(uri, spec.experiment_name())
        own = storage / "quickstart-20261201-000000"
        own.mkdir()
        resolved = {"spec/resolved.json": json.dumps(spec.model_dump(mode="json"))}  # as the runner logs it
        run_id = tracker.start_study(
            "quickstart", {"paradis.study": "quickstart", "paradis.experiment_dir": str(own)}, resolved
        )
        (own / "tuner.pkl").write_bytes(b"not restored in this test")
        (own / "paradis_study.json").write_text(json.dumps({"parent_run_id": run_id}))
        assert resumable_experiment(spec, tracker) == (own, run_id)
        os.chmod(own / "tuner.pkl", 0o666)  # writable by others: somebody could have swapped it
        with pytest.raises(UnsafeResume, match="writable by group or others"):
            resumable_experiment(spec, tracker)
        os.chmod(own / "tuner.pkl", 0o644)
        tracker.start_study("quickstart", {"paradis.study": "quickstart", "paradis.experiment_dir": str(planted)}, {})
        with pytest.raises(UnsafeResume, match="names run 'x'"):
            resumable_experiment(spec, tracker)
        elsewhere = tmp_path / "elsewhere" / "quickstart-20261201-000001"
        elsewhere.mkdir(parents=True)
        tracker.start_study("quickstart", {"paradis.study": "quickstart", "paradis.experiment_dir": str(elsewhere)}, {})
        with pytest.raises(UnsafeResume, match="not inside the storage path"):
            resumable_experiment(spec, tracker)
        assert not marker.exists()  # nothing was unpickled
    finally:
        os.environ.pop("PARADIS_HOME", None)


def test_the_ray_token_is_made_private(tmp_path):
    from orchestration.study import private_token

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    private_token(token)
    assert token.stat().st_mode & 0o777 == 0o600


# --- seeds counted honestly (found by the second adversarial pass) -----------------------------------------
def test_smoke_does_not_hide_a_refusal(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(HEAD + "repeats: 2\nsearch: {samples: 3}\n")
    for smoke in (False, True):
        with pytest.raises(ConfigError, match=r"search\.samples 3 repeats a grid with the same seeds"):
            load_study(path, smoke=smoke)


@pytest.mark.parametrize("seed", ["3.0", "'3'", "3"])
def test_a_seed_written_otherwise_is_the_same_seed_for_every_repeat(tmp_path, seed):
    """training.seed: 3.0 validates as 3; the repeats' seeds are 3, 4, 5, 6 (repeat 0 once, never 0 + r)."""
    from orchestration.trials import trials

    path = tmp_path / "study.yaml"
    path.write_text(HEAD + f"training: {{seed: {seed}}}\nrepeats: 4\n")
    spec = load_study(path)
    assert sorted(t.config.training.seed for t in trials(spec, str(path))) == [3, 4, 5, 6]
