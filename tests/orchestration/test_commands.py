"""``paradis-study list|status|show|export|compare`` on a real sqlite MLflow store, written here through the
runner's own Tracker (no training): what each command prints, the pairing by seed of ``compare``, and
bad input as one line and exit 2. The same commands on a store a smoke study wrote:
tests/orchestration/test_end_to_end.py::test_quickstart_smoke_then_resume_adds_no_duplicate_runs."""

import json
import re
import subprocess
import sys

import pytest

from orchestration import run_study
from orchestration.tracking import open_tracker, tag_names

SWITCHES = ("[1.0]", "[0.5, 0.5]")


def _rows(acc: float) -> list[dict]:
    return [
        {"switch": s, "trained": True, "top1": acc - 0.01 * i, "macs": 1e6 / (i + 1), "max_device_macs": 5e5}
        for i, s in enumerate(SWITCHES)
    ]


def _study(uri: str, name: str, accs: dict[str, dict[int, float | None]], status: str = "FINISHED") -> str:
    """A study run with a trial per (variant, seed); ``None``: a trial that failed at epoch 1."""
    tracker = open_tracker(uri, f"paradis-{name}")
    parent = tracker.start_study(name, {tag_names.STUDY: name}, {"spec/study.yaml": f"name: {name}\n"})
    for variant, seeds in accs.items():
        for seed, acc in seeds.items():
            params = {"variant": variant, "repeat": seed}
            tags = {tag_names.SEARCH: json.dumps(params), tag_names.METHOD: f"ParaDiS {variant}"}
            tags[tag_names.EPOCHS] = "2" if acc is not None else "1"
            run = tracker.start_trial(f"{variant}-{seed}", f"{variant}-seed{seed}", {"training.epochs": 2}, tags)
            for epoch in (1, 2) if acc is not None else (1,):
                tracker.log_metrics(run, {"acc/1.0": (acc or 0.3) * epoch / 2, "loss": 1.0 / epoch}, step=epoch)
            if acc is None:
                tracker.set_tags(run, {tag_names.ERROR: "loss is NaN at epoch 1"})
                tracker.finish(run, "FAILED")
                continue
            tracker.log_table(run, _rows(acc), "table/switches.json")
            tracker.finish(run, "FINISHED")
    if status != "RUNNING":
        tracker.finish(parent, status)
    return parent


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # run A: 3 seeds of two variants; run B: "wide" 1 point better on every seed, its middle seed failed
    a = _study(uri, "ablation", {"wide": {0: 0.80, 1: 0.82, 2: 0.84}, "none": {0: 0.70, 1: 0.71, 2: 0.72}})
    b = _study(uri, "ablation", {"wide": {0: 0.81, 1: None, 2: 0.85}, "ipkd": {0: 0.75}}, status="RUNNING")
    other = _study(uri, "quickstart", {"solo": {0: 0.5}}, status="KILLED")
    return uri, a, b, other


def _cmd(*argv: str, capsys) -> tuple[int, str, str]:
    code = run_study.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_study_run_with_its_state_and_trial_counts(store, capsys):
    uri, a, b, other = store
    code, out, _ = _cmd("list", "--tracking-uri", uri, capsys=capsys)
    assert code == 0 and out.startswith(f"3 study run(s) in {uri}")
    lines = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if re.match(r"\| [0-9a-f]{32}", line)}
    assert list(lines) == [other, b, a]  # newest first
    assert "| ablation | paradis-ablation |" in lines[a] and "| FINISHED | 6 / 0 / 6 |" in lines[a]
    assert "| RUNNING | 3 / 1 / 4 |" in lines[b]
    assert "| quickstart | paradis-quickstart |" in lines[other] and "| KILLED | 1 / 0 / 1 |" in lines[other]
    code, out, _ = _cmd("list", "--tracking-uri", uri, "--study", "quickstart", capsys=capsys)
    assert out.startswith("1 study run(s)") and other in out and a not in out


def test_status_shows_each_trials_state_epoch_metrics_and_failure(store, capsys):
    uri, _, b, _ = store
    code, out, _ = _cmd("status", "--tracking-uri", uri, "ablation@latest", capsys=capsys)
    assert code == 0 and out.startswith(f"study ablation (run {b}, experiment paradis-ablation): RUNNING")
    assert "4 trial(s)" in out
    row = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines() if "-seed" in line}
    assert row["wide-seed1"][1:3] == ["FAILED", "1"] and row["wide-seed1"][-1].strip(" |") == "loss is NaN at epoch 1"
    assert row["wide-seed0"][1:3] == ["FINISHED", "2"] and "acc/1.0 0.81" in row["wide-seed0"][5]


def test_show_prints_what_the_study_logged_else_builds_the_table(store, capsys):
    uri, a, b, _ = store
    tracker = open_tracker(uri, "paradis-ablation")
    tracker.log_text(a, "**the logged table**\n", "study/table.md")
    tracker.log_text(a, "**the logged summary**\n", "study/summary.md")
    code, out, _ = _cmd("show", "--tracking-uri", uri, a, capsys=capsys)
    assert code == 0 and out == "**the logged table**\n\n**the logged summary**\n"
    code, out, _ = _cmd("show", "--tracking-uri", uri, b, capsys=capsys)  # running: no table logged yet
    assert out.startswith(f"(built from its trials: study run {b} is RUNNING and logged no table yet)")
    assert "| wide-seed0 | ParaDiS wide | wide | 0 | 81.00 | 80.00 |" in out


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "latex"])
def test_export_writes_the_study_table_in_each_format(store, capsys, tmp_path, fmt):
    uri, a, _, _ = store
    out_file = tmp_path / f"table.{fmt}"
    code, out, _ = _cmd("export", "--tracking-uri", uri, a, "--format", fmt, "--output", str(out_file), capsys=capsys)
    assert code == 0 and out.strip() == f"wrote {out_file}"
    text = out_file.read_text()
    if fmt == "json":
        data = json.loads(text)
        assert data["run_id"] == a and len(data["rows"]) == 6
        row = {r["trial"]: r for r in data["rows"]}["none-seed2"]
        assert row["acc [1.0]"] == pytest.approx(0.72)
        assert (row["epochs"], row["planned epochs"], row["ended"]) == (2, 2, "finished")
    elif fmt == "csv":
        assert text.splitlines()[0].startswith("trial,method,variant,repeat") and len(text.splitlines()) == 7
    elif fmt == "md":
        assert "| none-seed2 | ParaDiS none | none | 2 | 72.00 | 71.00 |" in text
    else:
        assert text.startswith(r"\begin{tabular}") and text.rstrip().endswith(r"\end{tabular}")
        assert r"none-seed2 & ParaDiS none & none & 2 & TERMINATED & 0.7200 & 0.7100" in text


def test_latex_escapes_what_it_writes(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = _study(uri, "x", {"50%_{of}#&$": {0: 0.5}})
    code, out, _ = _cmd("export", "--tracking-uri", uri, run, "--format", "latex", capsys=capsys)
    assert code == 0 and r"50\%\_\{of\}\#\&\$" in out


def test_compare_pairs_by_seed_and_drops_only_the_failed_seed(store, capsys):
    """B's "wide" is 1 point above A's on seeds 0 and 2 and failed on seed 1: paired by seed, +1.00 on
    n = 2 with one unpaired seed (paired by position, seed 2 of B would meet seed 1 of A: +3 and +1)."""
    uri, a, b, _ = store
    code, out, _ = _cmd("compare", "--tracking-uri", uri, a, b, capsys=capsys)
    assert code == 0
    assert f"A: ablation run {a} (FINISHED)" in out and f"B: ablation run {b} (RUNNING)" in out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| wide |")]
    assert [r[1] for r in rows] == list(SWITCHES)
    for r in rows:
        assert r[4] == "+1.00" and r[5] == "[+1.00, +1.00]" and r[6:] == ["2", "1 |"]
    assert "| none |" not in out and "| ipkd |" not in out  # configurations of one run only
    code, out, _ = _cmd("compare", "--tracking-uri", uri, a, "quickstart", capsys=capsys)
    assert "no configuration was finished in both runs with a seed in common" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["status", "nosuch"], "no study 'nosuch' in sqlite:///"),
        (["status", "ablation@first"], "not @first"),
        (["show", "0123456789abcdef0123456789abcdef"], "no study run 0123456789abcdef0123456789abcdef"),
        (["export", "ablation", "--format", "xls"], "argument --format: invalid choice: 'xls'"),
        (["compare", "ablation"], "the following arguments are required: run_b"),
        (["list", "--tracking-uri", "sqlite:////nonexistent/mlflow.db"], "does not exist (no study has run there)"),
        (["list", "--tracking-uri", "sqlite:///relative.db"], "relative path"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(store, argv, needle):
    uri = store[0]
    if "--tracking-uri" not in argv:
        argv = [*argv, "--tracking-uri", uri]
    proc = subprocess.run(
        [sys.executable, str(run_study.SCHEMA_FILE.parents[1] / "orchestration" / "run_study.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_study: error: ") and needle in lines[0], proc.stderr
