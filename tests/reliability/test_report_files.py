"""A corpus of crafted study-results files (``docs/results/<study>.json``) for ``python -m orchestration.report
results --from``: each is refused in one line naming the file, or read without letting a value break the
report (a stopped seed never averaged as a full one, no heading, link or HTML from a value). Made from the
committed files, one change each (the second adversarial pass)."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from orchestration.report.cli import main

ROOT = Path(__file__).resolve().parents[2]
INJECTED = "ok\n# Pwned <script>alert(1)</script> [x](javascript:alert(1)) `"


def _trial(i, **changes):
    def change(d):
        d["trials"][i].update(changes)

    return change


def _row(**changes):
    def change(d):
        d["trials"][0]["rows"][0].update(changes)

    return change


def _set(path, value):
    def change(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _duplicate(d):
    twin = json.loads(json.dumps(next(t for t in d["trials"] if t["params"].get("repeat", 0) == 0)))
    twin["name"] += "-again"
    d["trials"].append(twin)


# name -> (change to ablation.json, text of the one-line refusal)
REFUSED = {
    "scores-nan": (_row(scores=[math.nan]), "scores[0]: nan is not a measure in [0, 1]"),
    "scores-over-one": (_row(scores=[50.0]), "scores[0]: 50.0 is not a measure in [0, 1]"),
    "scores-huge-negative": (_row(scores=[-1e300]), "is not a measure in [0, 1]"),
    "configuration-data-a-string": (_set(["configuration", "data"], "x"), "configuration"),
    "configuration-optimizer-a-list": (_set(["configuration", "training", "optimizer"], [1, 2]), "optimizer"),
    "configuration-subset-a-word": (_set(["configuration", "data", "train_subset"], "abc"), "train_subset"),
    "configuration-epochs-injected": (_set(["configuration", "training", "epochs"], INJECTED), "epochs"),
    "experiment-injected": (_set(["experiment"], INJECTED), "experiment"),
    "run-id-injected": (_set(["run_ids"], [INJECTED]), "is not a run id"),
    "wall-infinite": (_set(["wall_s"], math.inf), "wall_s"),
    "repeat-huge": (_trial(0, params={"repeat": 10**400, "variant": "paradis-ipkd"}), "is not a repeat index"),
    "seed-negative": (_trial(0, seed=-1), "seed"),
    "one-seed-twice": (_duplicate, "are the same configuration and repeat 0: one seed counted twice"),
}


def _report(tmp_path, change=None, raw=None):
    folder = tmp_path / "results"
    shutil.copytree(ROOT / "docs" / "results", folder)
    if change:
        data = json.loads((folder / "ablation.json").read_text())
        change(data)
        (folder / "ablation.json").write_text(json.dumps(data, allow_nan=True))
    if raw is not None:
        (folder / "ablation.json").write_bytes(raw)
    out = tmp_path / "RESULTS.md"
    return main(["results", "--from", str(folder), "--output", str(out)]), out


def test_the_committed_files_read(tmp_path, capsys):
    assert _report(tmp_path)[0] == 0


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_crafted_file_is_refused_in_one_line(tmp_path, capsys, case):
    change, needle = REFUSED[case]
    code, out = _report(tmp_path, change)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("report: error: "), err
    assert "ablation.json" in err[0] and needle in err[0], err[0]
    assert not out.exists()


def test_deeply_nested_json_is_one_line(tmp_path, capsys):
    code, _ = _report(tmp_path, raw=b"[" * 100_000)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nested too deeply" in err[0], err


def test_a_seed_stopped_early_is_never_averaged_as_a_full_one(tmp_path, capsys):
    full, _ = _report(tmp_path / "a")
    before = (tmp_path / "a" / "RESULTS.md").read_text()
    assert full == 0 and "15 of 15 trials finished" in before
    code, out = _report(tmp_path / "b", _trial(0, epochs=1))
    assert code == 0 and "14 of 15 trials finished" in out.read_text()


def test_values_in_the_text_cannot_break_the_page(tmp_path, capsys):
    def change(d):
        d["convergence"][0]["verdict"] = INJECTED
        d["trials"][0]["params"]["variant"] = INJECTED
        d["trials"][0]["label"] = INJECTED

    code, out = _report(tmp_path, change)
    text = out.read_text()
    assert code == 0 and "Pwned" in text
    assert "<script>" not in text and "</script>" not in text
    assert not re.search(r"(?<!\\)\]\(javascript", text)  # a link only where "](" is not escaped
    assert not any(line.startswith("# Pwned") for line in text.splitlines())


def test_a_convergence_threshold_that_is_no_number_shows_no_verdict(tmp_path, capsys):
    code, out = _report(tmp_path, _set(["convergence", 0, "threshold"], math.nan))
    assert code == 0 and "under nan" not in out.read_text()
