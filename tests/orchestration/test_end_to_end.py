"""End to end on a local Ray, MLflow in sqlite: the studies as a user runs them (slow)."""

import csv
import io
import itertools
import json
import re
import time
from pathlib import Path

import pytest

from tests.orchestration.conftest import artifact_paths, mlflow_runs, run_study

pytestmark = pytest.mark.slow


def _check_children(client, children, n_epochs=2):
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        history = client.get_metric_history(child.info.run_id, "acc/1.0")
        assert [m.step for m in history] == list(range(1, n_epochs + 1))
        assert all(0.0 <= m.value <= 1.0 for m in history)
        assert "training.method" in child.data.params and "training.switches" in child.data.params
        paths = artifact_paths(client, child.info.run_id)
        assert {"table/switches.json", "table/switches.csv", "table/switches.md", "checkpoint/model.pt"} <= set(paths)


def test_quickstart_smoke_then_resume_adds_no_duplicate_runs(study_env, tmp_path):
    proc = run_study(["studies/quickstart.yaml", "--smoke"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 of 3 trials finished" in proc.stdout
    db = tmp_path / "home" / "mlflow.db"
    client, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["paradis.study"] == "quickstart"
    assert parent.data.tags["paradis.git_commit"] != ""
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    _check_children(client, children)
    # the runs table's source and data set columns
    assert all(r.data.tags["mlflow.source.name"] == "run_study.py studies/quickstart.yaml" for r in [parent, *children])
    inputs = [client.get_run(c.info.run_id).inputs.dataset_inputs for c in children]
    assert all(len(i) == 1 and i[0].dataset.name == "fashion-mnist" for i in inputs)
    assert len({i[0].dataset.digest for i in inputs}) == 1  # the same images in every variant
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {
        "spec/study.yaml",
        "study/table.md",
        "study/table.csv",
        "study/table.json",
        "study/accuracy_vs_macs.png",
        "study/learning_curves.json",
        "study/learning_curves.png",
        "study/convergence.json",
    } <= paths
    # the learning curves: every trial's teacher ([1.2]: all three variants train it) at both epochs
    conv = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "study/convergence.json", str(tmp_path / "dl"))).read_text()
    )
    assert len(conv["trials"]) == 3 and {t["switch"] for t in conv["trials"].values()} <= {"acc/1.2", "acc/1.0"}
    assert conv["verdict"] in ("flattened", "still improving") and "Learning curves:" in proc.stdout
    local = Path(client.download_artifacts(parent.info.run_id, "study/table.csv", str(tmp_path / "dl")))
    rows = list(csv.DictReader(io.StringIO(local.read_text())))
    assert sorted(r["variant"] for r in rows) == ["ipkd", "wide-ipkd", "wide-ipkd-a"]
    for r in rows:
        for col in ("acc [1.0]", "acc [0.5, 0.5]", "acc [0.5, 0.25, 0.25]", "acc [4x0.25]"):
            assert 0.0 < float(r[col]) <= 1.0
    png = Path(client.download_artifacts(parent.info.run_id, "study/accuracy_vs_macs.png", str(tmp_path / "dl")))
    assert png.read_bytes()[:4] == b"\x89PNG"
    # nothing of the study lands in the working directory
    assert not (Path.cwd() / "mlruns").exists() and not (Path.cwd() / "mlartifacts").exists()

    again = run_study(["studies/quickstart.yaml", "--smoke", "--resume"], study_env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, parents, children = mlflow_runs(db, "paradis-quickstart")
    assert len(parents) == 1 and len(children) == 3
    assert parents[0].info.status == "FINISHED"
    for child in children:  # finished trials were not run again: no extra epochs logged
        assert len(client.get_metric_history(child.info.run_id, "acc/1.0")) == 2
    _the_terminal_commands_read_it(study_env, parents[0].info.run_id)


def _the_terminal_commands_read_it(env, run_id):
    """paradis-study list, status, show, export and compare on the store the smoke study wrote."""
    listed = run_study(["list"], env)
    assert listed.returncode == 0 and f"| {run_id} | quickstart | paradis-quickstart |" in listed.stdout
    assert "| FINISHED | 3 / 0 / 3 |" in listed.stdout, listed.stdout
    status = run_study(["status", "quickstart@latest"], env)
    assert status.returncode == 0 and "3 trial(s)" in status.stdout, status.stderr
    assert status.stdout.count(" | FINISHED | 2 | finished | ") == 3, status.stdout
    show = run_study(["show", run_id], env)
    assert show.returncode == 0 and show.stdout.startswith("**quickstart:"), show.stdout[:500]
    exported = run_study(["export", "quickstart", "--format", "csv"], env)
    assert exported.returncode == 0 and len(list(csv.DictReader(io.StringIO(exported.stdout)))) == 3
    compared = run_study(["compare", run_id, "quickstart"], env)  # a run against itself: every difference 0
    assert compared.returncode == 0 and compared.stdout.count("| +0.00 |") == 15, compared.stdout


def test_optuna_search_with_asha_smoke(study_env, tmp_path):
    proc = run_study(["studies/search.yaml", "--smoke"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-search")
    assert len(parents) == 1 and len(children) == 3
    assert parents[0].data.tags["paradis.search"] == "optuna"
    betas = {c.data.params["search.training.beta"] for c in children}
    assert len(betas) == 3  # three distinct suggestions
    stopped_early = 0
    for child in children:
        assert child.info.status == "FINISHED"
        steps = len(client.get_metric_history(child.info.run_id, "acc/target"))
        assert 1 <= steps <= 2  # ASHA may stop at 1
        stopped_early += steps == 1
    # a trial ASHA stopped reads ASHA in the study table, never interrupted (Tune completed it)
    assert proc.stdout.count("| ASHA |") == stopped_early and "interrupted" not in proc.stdout
    # the Optuna study is kept beside the MLflow store, named on the parent run: the dashboard opens it
    import optuna

    tags = parents[0].data.tags
    assert tags["paradis.optuna_storage"] == f"sqlite:///{tmp_path / 'home' / 'optuna.db'}"
    study = optuna.load_study(study_name=tags["paradis.optuna_study"], storage=tags["paradis.optuna_storage"])
    assert len(study.trials) == 3
    assert {t.params["training.beta"] for t in study.trials} == {float(b) for b in betas}


def test_trial_with_two_workers_runs_ddp_through_ray_train(study_env, tmp_path):
    proc = run_study(
        [
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            "search.variants=null",
            "--set",
            "search.variants={ddp: {training.beta: 0.1}}",
            "--set",
            "resources.workers_per_trial=2",
            "--set",
            "resources.cpus_per_worker=0.5",
        ],
        study_env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, _parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert len(children) == 1
    _check_children(client, children)


def _overlap(runs) -> bool:
    """Whether some two runs were open at the same time."""
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def test_pareco_smoke_runs_its_methods_as_concurrent_trials_and_logs_the_fronts(study_env, tmp_path):
    proc = run_study(["studies/pareco.yaml", "--smoke"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-pareco")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    variants = sorted(c.data.params["search.variant"] for c in children)
    assert variants == ["pareco", "pareco-2dev", "slimmable", "twostage"]
    assert all(c.info.status == "FINISHED" and c.data.tags["paradis.trial_id"] for c in children)
    assert _overlap(children)  # Tune trials, two at a time
    parent = parents[0]
    for v in variants:
        assert 0.0 <= parent.data.metrics[f"hypervolume/{v}"] <= 1.0
    assert {"study/fronts.md", "study/fronts.json", "study/pareto_fronts.png", "study/table.md"} <= set(
        artifact_paths(client, parent.info.run_id)
    )
    for c in children:
        assert {"front/front.json", "front/evaluated.json", "checkpoint/model.pt"} <= set(
            artifact_paths(client, c.info.run_id)
        )
        assert "hypervolume" in c.data.metrics and c.data.params["data.holdout"] == "256"
    md = Path(client.download_artifacts(parent.info.run_id, "study/fronts.md", str(tmp_path / "dl"))).read_text()
    assert "Distributable search (pareco-2dev" in md and "Best test top-1 within a budget" in md


def test_multiobjective_search_smoke_logs_its_pareto_front(study_env, tmp_path):
    proc = run_study(["studies/search_multiobjective.yaml", "--smoke"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-search")
    parent = parents[0]
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert parent.data.metrics["hypervolume/search"] >= 0.0
    assert json.loads(parent.data.params["search_hypervolume_reference"]) == [0.5, 3835000]
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {"study/search_front.md", "study/search_front.json", "study/search_front.png"} <= paths
    md = Path(client.download_artifacts(parent.info.run_id, "study/search_front.md", str(tmp_path / "dl"))).read_text()
    assert "non-dominated trials" in md and "stated in the spec" in md


@pytest.mark.parametrize(
    ("study", "experiment", "trials", "extra"),
    [
        ("ablation", "paradis-ablation", 5, []),
        ("baselines", "paradis-baselines", 6, []),
        ("for_free", "paradis-for-free", 2, ["--set", "precision=bf16", "--set", "channels_last=true"]),
        ("scaling_8_switches", "paradis-scaling", 1, []),
        ("sr_paradis", "paradis-sr", 6, []),
    ],
)
def test_every_reduced_study_runs_with_smoke(study_env, tmp_path, study, experiment, trials, extra):
    proc = run_study([f"studies/{study}.yaml", "--smoke", *extra], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{trials} of {trials} trials finished" in proc.stdout
    _client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", experiment)
    assert parents[0].info.status == "FINISHED" and len(children) == trials
    assert all(c.info.status == "FINISHED" for c in children)
    if extra:
        assert all(c.data.params["precision"] == "bf16" and c.data.params["channels_last"] == "True" for c in children)


def test_repeated_seeds_give_means_intervals_and_paired_differences(study_env, tmp_path):
    variants = "search.variants={wide-ipkd: {training.beta: 0.0}, b: {training.distillation: ipkd}}"
    args = [
        "studies/quickstart.yaml",
        "--smoke",
        "--set",
        "search.variants=null",
        "--set",
        variants,
        "--set",
        "repeats=2",
        "--set",
        "compare=wide-ipkd",
    ]
    proc = run_study(args, study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 of 4 trials finished" in proc.stdout
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert sorted((c.data.params["search.variant"], c.data.params["search.repeat"]) for c in children) == [
        ("b", "0"),
        ("b", "1"),
        ("wide-ipkd", "0"),
        ("wide-ipkd", "1"),
    ]
    assert {c.data.params["training.seed"] for c in children} == {"0", "1"}
    parent = parents[0]
    paths = set(artifact_paths(client, parent.info.run_id))
    assert {"study/summary.md", "study/summary.json", "study/summary.png", "study/compare.md"} <= paths
    summary = Path(client.download_artifacts(parent.info.run_id, "study/summary.md", str(tmp_path / "dl")))
    assert " (2) |" in summary.read_text()
    assert "diff/b/1.0" in parent.data.metrics

    # the reproduction report reads the same runs back (the quickstart is the main job, not evidence:
    # no claim reads it, its study section shows its seeds)
    from orchestration.report.cli import main as report

    out = tmp_path / "RESULTS.md"
    uri = f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert report(["results", "--tracking-uri", uri, "--output", str(out), "--study", "quickstart"]) == 0
    text = out.read_text()
    assert f"Run `{parent.info.run_id}`: 4 of 4 trials finished, 2 seed(s)" in text
    assert "## C3: inconclusive" in text and "No data: ablation, baselines not run in this tracking store." in text
    assert "| b | ParaDiS IPKD |" in text  # the summary table, with each configuration's method


def test_an_optuna_trial_trains_its_seeds_and_reports_their_mean(study_env, tmp_path):
    args = ["studies/search.yaml", "--smoke", "--set", "repeats=2", "--set", "search.samples=2"]
    proc = run_study([*args, "--set", "scheduler.kind=none"], study_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, parents, children = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-search")
    assert len(children) == 2
    for c in children:
        table = json.loads(
            Path(
                client.download_artifacts(c.info.run_id, "table/switches.json", str(tmp_path / c.info.run_id))
            ).read_text()
        )
        scores = [dict(zip(table["columns"], row))["scores"] for row in table["data"]]
        assert scores and all(len(seed_values) == 2 for seed_values in scores)  # both seeds' measures kept
    summary = Path(client.download_artifacts(parents[0].info.run_id, "study/summary.md", str(tmp_path / "dl")))
    assert " (2) |" in summary.read_text()


def test_a_time_budget_stops_the_study_on_time_and_says_so(study_env, tmp_path):
    """search.time_budget: Tune stops the trials then; the study ends (not as interrupted), its table
    and `paradis-study status` say which trials the budget stopped and at which epoch, and no stopped
    trial is averaged."""
    budget = 60  # a fresh machine first unpacks Fashion-MNIST: a trial may not report within a shorter one
    start = time.perf_counter()
    proc = run_study(
        [
            "studies/quickstart.yaml",
            "--smoke",
            "--set",
            f"search.time_budget={budget}s",
            "--set",
            "training.epochs=400",
        ],
        study_env,
    )
    wall = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"time budget of {budget} s reached: 0 of 3 trials finished" in proc.stdout, out[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "_" in line.split(" | ")[0]]
    # a trial Tune had created but that reported no epoch when the time was up says so
    assert rows and all(re.search(r" \| ([1-9]\d*/400 \| budget|0/400 \| not started) \| ", row) for row in rows), rows
    assert wall < budget + 120  # Ray's start, the reports and MLflow on 2 busy cores; not 40 epochs
    _, parents, _ = mlflow_runs(tmp_path / "home" / "mlflow.db", "paradis-quickstart")
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["paradis.ended"].startswith(f"time budget of {budget} s reached")
    status = run_study(["status", "quickstart"], study_env)
    assert status.returncode == 0 and f"time budget of {budget} s reached" in status.stdout, status.stderr
    assert re.search(r" \| KILLED \| \d+ \| (budget|not started) \| ", status.stdout), status.stdout
