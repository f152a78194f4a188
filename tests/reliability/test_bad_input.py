"""A corpus of malformed studies: each is rejected by the command line within 2 seconds, with exit code
2 and one line naming the file and the key path, before Ray starts and with nothing written to MLflow."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "studies" / "quickstart.yaml").read_text()

HEAD = "name: x\nmodel: {name: mobilenet_v1_small}\ndata: {name: synthetic}\n"  # what every study names
# name -> (file content, text the one-line message must contain)
CORPUS = {
    "unknown-key": (HEAD + "training: {epochz: 2}\n", "training.epochz: unknown key"),
    "unknown-top-key": (HEAD + "models: {name: resnet50}\n", "models: unknown key"),
    "wrong-type": (HEAD + "training: {epochs: two}\n", "training.epochs: Input should be a valid integer"),
    "wrong-type-section": (HEAD + "training: [1, 2]\n", "training: Input should be a valid dictionary"),
    "missing-required": (
        "description: no name\nmodel: {name: resnet_small}\ndata: {name: synthetic}\n",
        "name: required key is missing",
    ),
    "missing-model": ("name: x\ndata: {name: synthetic}\n", "model: required key is missing"),
    "missing-data": ("name: x\nmodel: {name: resnet_small}\n", "data: required key is missing"),
    "model-without-name": ("name: x\nmodel: {wide: 1}\ndata: {name: synthetic}\n", "model.name: a study names"),
    "switch-wider-than-wide-factor": (
        HEAD + "training: {switches: ['[0.7, 0.7]']}\n",
        "training.switches[0]: switch [0.7, 0.7] spans width 1.4",
    ),
    "zero-width": (HEAD + "training: {switches: ['[0.5, 0]']}\n", "width 0.0 must be positive"),
    "negative-width": (HEAD + "training: {switches: ['[-0.5]']}\n", "width -0.5 must be positive"),
    "unparseable-switch": (HEAD + "training: {switches: ['[half, half]']}\n", "'half' is not a number"),
    "negative-beta": (HEAD + "training: {beta: -0.1}\n", "training.beta: Input should be greater than or equal to 0"),
    "zero-epochs": (HEAD + "training: {epochs: 0}\n", "training.epochs: Input should be greater than 0"),
    "unknown-dataset": (
        "name: x\nmodel: {name: resnet_small}\ndata: {name: mnist}\n",
        "data.name: unknown data set 'mnist'",
    ),
    "unknown-model": ("name: x\nmodel: {name: vgg16}\ndata: {name: synthetic}\n", "model.name: unknown model 'vgg16'"),
    "unknown-method": (HEAD + "training: {method: distill}\n", "training.method: unknown method 'distill'; known: "),
    "unknown-search": (HEAD + "search: {kind: hyperopt}\n", "search.kind: Input should be 'grid' or 'optuna'"),
    "unknown-scheduler": (HEAD + "scheduler: {kind: pbt}\n", "scheduler.kind: Input should be 'none' or 'asha'"),
    "missing-data-folder": (
        "name: x\nmodel: {name: resnet_small}\ndata: {name: cifar10, root: /nonexistent/cifar}\n",
        "cifar10 folder '/nonexistent/cifar' lacks cifar-10-batches-py/",
    ),
    "duplicate-key": (HEAD + "training: {epochs: 1}\ntraining: {epochs: 2}\n", "duplicate key 'training'"),
    "experiment-as-path": (HEAD + "tracking: {experiment: /tmp/elsewhere}\n", "may hold letters, digits"),
    "experiment-with-dots": (HEAD + "tracking: {experiment: ../up}\n", "no path, no '..'"),
    "compare-one-seed": (
        HEAD + "search: {variants: {a: {training.beta: 0.0}, b: {training.beta: 0.1}}}\ncompare: a\n",
        "compare: 'a' pairs seeds; it needs repeats of 2 or more",
    ),
    "repeats-with-asha": (
        HEAD + "repeats: 3\nscheduler: {kind: asha}\n",
        "repeats 3: ASHA would stop a grid configuration's seeds at different epochs",
    ),
    "repeat-from-with-asha": (
        HEAD + "repeat_from: 2\nscheduler: {kind: asha}\n",
        "repeats 1 from 2: ASHA would stop a grid configuration's seeds at different epochs",
    ),
    "repeats-with-samples": (
        HEAD + "repeats: 2\nsearch: {samples: 2}\n",
        "search.samples 2 repeats a grid with the same seeds",
    ),
    "grid-samples-alone": (HEAD + "search: {samples: 3}\n", "search.samples 3 repeats a grid with the same seeds"),
    "repeats-with-searched-seed": (
        HEAD + "repeats: 2\nsearch: {space: {training.seed: {grid: [0, 1]}}}\n",
        "repeats 2: search.space.training.seed sets training.seed, which repeats set",
    ),
    "repeat-from-with-searched-seed": (
        HEAD + "repeat_from: 1\nsearch: {space: {training.seed: {grid: [0, 1]}}}\n",
        "repeats 1 from 1: search.space.training.seed sets training.seed",
    ),
    "repeats-with-seed-in-a-nested-variant": (
        HEAD + "repeats: 2\nsearch: {variants: {a: {training.beta: 0.0}, b: {training: {seed: 1}}}}\n",
        "repeats 2: search.variants.b sets training.seed",
    ),
    "repeats-with-seed-in-a-searched-section": (
        HEAD + "repeats: 2\nsearch: {space: {training: {grid: [{seed: 0}, {seed: 1}]}}}\n",
        "repeats 2: search.space.training sets training.seed",
    ),
    "repeats-with-seed-in-an-optuna-choice": (
        HEAD + "repeats: 2\nsearch: {kind: optuna, space: {training: {choice: [{seed: 0}, {seed: 1}]}}}\n",
        "repeats 2: search.space.training sets training.seed",
    ),
    "python-object-tag": ("name: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    "empty-file": ("", "the file is empty"),
    "not-a-mapping": ("- name: x\n", "expected a mapping of settings at the top, got list"),
    "scalar-file": ("just words\n", "expected a mapping of settings at the top, got str"),
    "absurd-epochs": (
        HEAD + "training: {epochs: 1000000000}\n",
        "training.epochs: Input should be less than or equal to",
    ),
    "absurd-lr": (HEAD + "training: {optimizer: {lr: 1.0e+9}}\n", "training.optimizer.lr: Input should be less than"),
    "absurd-batch": (HEAD + "training: {batch_size: -5}\n", "training.batch_size: Input should be greater than 0"),
    "space-over-missing-key": (
        HEAD + "search: {kind: grid, space: {training.momentum: {grid: [0.9]}}}\n",
        "search.space.training.momentum: no such key",
    ),
    "space-bad-value": (
        HEAD + "search: {kind: grid, space: {training.wide_factor: {grid: [1.2, 0.5]}}}\n",
        "training.wide_factor: Input should be greater than or equal to 1",
    ),
    "too-many-gpus": (
        HEAD + "resources: {workers_per_trial: 2, gpus_per_worker: 4}\n",
        "resources.gpus_per_worker: a trial needs 8 GPU(s)",
    ),
    "bad-yaml-syntax": (HEAD + "training: {epochs: 2\n", "not valid YAML"),
    "unknown-switch-set": (
        HEAD + "search: {kind: grid, space: {training.switches: {grid: [tiny]}}}\n",
        "'tiny' is not a switch set",
    ),
}


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_malformed_study_is_rejected_quickly_and_cleanly(case, tmp_path):
    text, needle = CORPUS[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(PARADIS_HOME=str(home), RAY_TMPDIR=str(tmp_path / "ray"))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "orchestration" / "run_study.py"), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"run_study: error: {path}"), lines[0]
    assert needle in lines[0], lines[0]
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert not home.exists() and not (tmp_path / "ray").exists()  # no MLflow store, no Ray session
    assert "pwned" not in proc.stdout
