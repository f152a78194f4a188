import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration.preflight import load_study
from orchestration.search import first_suggestions
from orchestration.smoke import apply_smoke
from orchestration.spec import study_from_data
from orchestration.study import dry_run_text
from orchestration.trials import grid_points, run_config_for
from paradis.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "studies").rglob("*.yaml"))


def test_every_shipped_study_is_valid():
    names = {p.relative_to(ROOT / "studies").as_posix() for p in STUDIES}
    assert {
        "quickstart.yaml",
        "ablation.yaml",
        "baselines.yaml",
        "scaling_8_switches.yaml",
        "for_free.yaml",
        "search.yaml",
        "search_multiobjective.yaml",
    } <= names
    assert any(n.startswith("paper/") for n in names)
    for path in STUDIES:
        spec = load_study(path)
        assert dry_run_text(spec)
        smoke = load_study(path, smoke=True)
        assert smoke.training.epochs == 2 and smoke.training.max_steps_per_epoch == 8


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.relative_to(ROOT / "studies").as_posix())
def test_trials_run_exactly_the_configurations_the_checks_validated(path):
    """A trial rebuilds its configuration from the spec's data sent through Ray (JSON), as the driver
    did when it checked it: the two are equal for every grid point, full-scale and smoke."""
    for smoke in (False, True):
        spec = load_study(path, smoke=smoke)
        in_trial = study_from_data(json.loads(json.dumps(spec.data_dict)), "trial")
        for params in grid_points(spec) if spec.search.kind == "grid" else [{}]:
            assert run_config_for(in_trial, params) == run_config_for(spec, params)


def test_baselines_individual_trials_train_on_the_labels():
    """The individual variants do not inherit the wide distillation another variant sets."""
    spec = load_study(ROOT / "studies/baselines.yaml")
    in_trial = study_from_data(json.loads(json.dumps(spec.data_dict)), "trial")
    for name in ("individual-1.0", "individual-4x0.25"):
        assert run_config_for(in_trial, {"variant": name}).training.distillation == "none"


def test_a_study_names_its_model_and_data(tmp_path):
    text = (ROOT / "studies/quickstart.yaml").read_text()
    for key in ("model", "data"):
        path = tmp_path / f"no-{key}.yaml"
        # drop the section's header and its indented body
        out, skip = [], False
        for line in text.splitlines():
            if line.startswith(f"{key}:"):
                skip = True
                continue
            if skip and line.startswith("  "):
                continue
            skip = False
            out.append(line)
        dropped = [line for line in text.splitlines() if line not in out]
        assert dropped[0] == f"{key}:" and len(dropped) >= 2 and all(d.startswith("  ") for d in dropped[1:])
        path.write_text("\n".join(out) + "\n")
        with pytest.raises(ConfigError, match=rf"{key}: required key is missing"):
            load_study(path)


def test_a_study_takes_every_run_option(tmp_path):
    spec = load_study(ROOT / "studies/quickstart.yaml", overrides=["precision=bf16", "channels_last=true"])
    cfg = run_config_for(spec, {"variant": "ipkd"})
    assert cfg.precision == "bf16" and cfg.channels_last and cfg.training.distillation == "ipkd"


def test_a_dotted_override_into_a_variant_merges():
    spec = load_study(ROOT / "studies/quickstart.yaml", overrides=["search.variants.ipkd.training.beta=0.5"])
    cfg = run_config_for(spec, {"variant": "ipkd"})
    # the base's other sections too (the quickstart trains one epoch)
    assert cfg.training.beta == 0.5 and cfg.training.distillation == "ipkd" and cfg.training.epochs == 1
    assert cfg.training.optimizer.lr == 0.2  # the base's training section is kept


def test_grid_dry_run_lists_every_trial():
    text = dry_run_text(load_study(ROOT / "studies/ablation.yaml"))
    assert "5 trial(s):" in text
    for row in (
        "paradis-no-kd: ParaDiS;",
        "paradis-ipkd: ParaDiS IPKD;",
        "paradis-wide-ipkd: ParaDiS Wide IPKD;",
        "paradis-wide-ipkd-a-0.1: ParaDiS Wide IPKD-A beta=0.1;",
        "paradis-wide-ipkd-a-1: ParaDiS Wide IPKD-A beta=1;",
    ):
        assert row in text


def test_optuna_dry_run_shows_the_space_and_reproducible_first_suggestions():
    spec = load_study(ROOT / "studies/search.yaml")
    text = dry_run_text(spec)
    assert "8 trial(s) suggested by Optuna (tpe, seed 0) to max acc/target" in text
    assert "training.beta: loguniform [0.01, 2.0]" in text
    first, again = first_suggestions(spec, 3), first_suggestions(spec, 3)
    assert first == again and len({str(p) for p in first}) == 3
    for params in first:
        assert 1.0 <= params["training.wide_factor"] <= 1.5
        cfg = run_config_for(spec, params)
        assert cfg.training.switches in (spec.switch_sets["paper"], spec.switch_sets["with-untrained-split"])


def test_variants_switch_sets_and_method_defaults():
    spec = load_study(ROOT / "studies/baselines.yaml")
    points = grid_points(spec)
    assert [p["variant"] for p in points][:2] == ["paradis-wide-ipkd", "us-wide-ipkd"]
    cfgs = {p["variant"]: run_config_for(spec, p) for p in points}
    assert cfgs["paradis-wide-ipkd"].training.distillation == "wide"
    resnet = load_study(ROOT / "studies/paper/baselines_resnet50_imagenet.yaml")
    assert run_config_for(resnet, {"variant": "slimmable"}).training.distillation == "none"
    assert cfgs["individual-4x0.25"].training.distillation == "none"  # follows the method
    assert cfgs["individual-4x0.25"].training.switches == ["[4x0.25]"]
    scaling = load_study(ROOT / "studies/scaling_8_switches.yaml")
    eight = run_config_for(scaling, {"training.switches": "eight"})
    assert len(eight.training.switches) == 7  # with the wide teacher: 8 switches per iteration


def test_smoke_scales_down_and_replaces_missing_folders():
    data = apply_smoke(
        {
            "data": {"name": "imagenet", "root": "/nonexistent"},
            "training": {"epochs": 250},
            "search": {"kind": "optuna", "samples": 40},
            "resources": {"gpus_per_worker": 1},
        }
    )
    assert data["data"]["name"] == "synthetic"
    assert data["training"]["epochs"] == 2 and data["search"]["samples"] == 3
    assert data["resources"]["gpus_per_worker"] == 0


HEAD = "name: x\nmodel: {name: mobilenet_v1_small}\ndata: {name: synthetic}\n"  # what every study names
BAD = {
    "unknown key": (HEAD + "search: {kind: grid, spaces: {}}\n", "search.spaces: unknown key"),
    "no such key": (
        HEAD + "search: {kind: grid, space: {training.bta: {grid: [0, 1]}}}\n",
        "search.space.training.bta: no such key",
    ),
    "bad grid value": (
        HEAD + "search: {kind: grid, space: {training.beta: {grid: [0, -1]}}}\n",
        "training.beta: Input should be greater than or equal to 0",
    ),
    "unknown switch set": (
        HEAD + "search: {kind: grid, space: {training.switches: {grid: [four]}}}\n",
        "'four' is not a switch set",
    ),
    "unknown search": (HEAD + "search: {kind: random}\n", "search.kind"),
    "unknown scheduler": (HEAD + "scheduler: {kind: pbt}\n", "scheduler.kind"),
    "nsga2 one objective": (
        HEAD + "search: {kind: optuna, sampler: nsga2, space: {training.beta: {uniform: [0, 1]}}}\n",
        "nsga2 is for several objectives",
    ),
    "asha without every epoch": (
        HEAD + "scheduler: {kind: asha}\nevaluation: {every: 2}\n",
        "evaluation.every: ASHA needs an evaluation every epoch",
    ),
    "two kinds": (
        HEAD + "search: {kind: optuna, space: {training.beta: {uniform: [0, 1], choice: [1]}}}\n",
        "give exactly one of",
    ),
    "missing name": (
        "description: no name\nmodel: {name: mobilenet_v1_small}\ndata: {name: synthetic}\n",
        "name: required key is missing",
    ),
    "missing model": ("name: x\ndata: {name: synthetic}\n", "model: required key is missing"),
    "model without name": ("name: x\nmodel: {}\ndata: {name: synthetic}\n", "model.name: a study names the model"),
    "bad name": ("name: 'a b'\nmodel: {name: resnet_small}\ndata: {name: synthetic}\n", "may hold letters"),
    "variant key": (
        HEAD + "search: {kind: grid, variants: {v: {training.nope: 1}}}\n",
        "search.variants.v.training.nope: no such key",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_studies_are_rejected_with_file_and_key(tmp_path, case):
    text, needle = BAD[case]
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)


def test_command_line_prints_one_line_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD["no such key"][0])
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "orchestration/run_study.py"), str(path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "search.space.training.bta" in proc.stderr
    assert time.perf_counter() - start < 30
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "orchestration/run_study.py"),
            str(ROOT / "studies/quickstart.yaml"),
            "--dry-run",
            "--set",
            "training.epochs=0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "training.epochs" in proc.stderr


def test_set_merges_a_mapping_into_its_section_exactly_as_a_variant_does():
    base = load_study(ROOT / "studies/quickstart.yaml")
    by_set = load_study(ROOT / "studies/quickstart.yaml", overrides=["training.optimizer={lr: 0.1, nesterov: false}"])
    by_variant = load_study(
        ROOT / "studies/quickstart.yaml",
        overrides=["search.variants.ipkd={training.optimizer: {lr: 0.1, nesterov: false}}"],
    )
    a, b = by_set.training.optimizer, run_config_for(by_variant, {"variant": "ipkd"}).training.optimizer
    assert a == b and a.lr == 0.1 and not a.nesterov
    assert a.momentum == base.training.optimizer.momentum == 0.9  # kept, not reset to the default
    assert a.weight_decay == base.training.optimizer.weight_decay
    with pytest.raises(ConfigError, match=r"--set 'training.epochs.x=1': 'epochs' is not a section"):
        load_study(ROOT / "studies/quickstart.yaml", overrides=["training.epochs.x=1"])


def test_null_clears_a_section_so_that_a_mapping_set_after_it_replaces_it():
    spec = load_study(
        ROOT / "studies/quickstart.yaml",
        overrides=["search.variants=null", "search.variants={only: {training.beta: 0.0}}"],
    )
    assert list(spec.search.variants) == ["only"]
    merged = load_study(ROOT / "studies/quickstart.yaml", overrides=["search.variants={only: {training.beta: 0.0}}"])
    assert list(merged.search.variants) == [*load_study(ROOT / "studies/quickstart.yaml").search.variants, "only"]


def test_a_key_that_is_no_name_is_one_error_not_a_traceback():
    with pytest.raises(ConfigError, match=r"'1' in 'training' is not a key"):
        load_study(ROOT / "studies/quickstart.yaml", overrides=["training={1: 2}"])
