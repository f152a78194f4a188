"""``paradis-study schema``: the JSON schema of a study, committed as docs/study.schema.json, which every
file under studies/ names on its first line for editors (yaml-language-server) and satisfies."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestration.run_study import SCHEMA_FILE, main, schema_text

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "studies").rglob("*.yaml"))


def test_the_committed_schema_is_the_one_the_command_prints(capsys):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text() == SCHEMA_FILE.read_text()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "orchestration/run_study.py"), "schema", "extra"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("run_study.py: error: schema takes no arguments")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(ROOT / "studies")))
def test_every_study_names_the_schema_and_satisfies_it(path):
    first = path.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), first
    assert (path.parent / first[len(prefix) :]).resolve() == SCHEMA_FILE
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []


def test_the_schema_refuses_what_the_spec_refuses():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    study = yaml.safe_load((ROOT / "studies/quickstart.yaml").read_text())
    assert validator.is_valid(study)
    assert not validator.is_valid({**study, "trainig": {}})  # an unknown key
    assert not validator.is_valid({**study, "repeats": 0})  # out of range
    assert not validator.is_valid({**study, "training": {**study["training"], "epochs": "two"}})
