"""The lock of tested versions: what scripts/lockfile.py reads and writes, and the README's table of
tested versions follows the committed lock."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)


def test_parse_reads_pins_and_skips_comments_and_markers():
    text = (
        "# python: 3.11\nTorch==2.14.1\nruamel.yaml==0.18.6  # why\nexecutorch==1.5.1 ; sys_platform == 'linux'\nx>=1\n"
    )
    assert lockfile.parse(text) == {"torch": "2.14.1", "ruamel-yaml": "0.18.6", "executorch": "1.5.1"}
    assert lockfile.header(text) == {"python": "3.11"}


def test_diff_names_every_changed_added_and_removed_package():
    lock = {"optuna": "5.0.0", "mlflow": "3.17.2", "gone": "1.0"}
    new = {"optuna": "5.1.0", "mlflow": "3.17.2", "fresh": "0.1"}
    assert lockfile.diff(lock, new) == [
        "fresh: (not installed) -> 0.1",
        "gone: 1.0 -> (not installed)",
        "optuna: 5.0.0 -> 5.1.0",
    ]
    assert lockfile.diff(lock, dict(lock)) == []


def test_render_then_parse_gives_the_same_pins():
    pins = {"torch": "2.14.1", "optuna": "5.1.0"}
    text = lockfile.render(pins, "3.11", "linux x86_64", "2026-12-02, fast suite: 10 passed")
    assert lockfile.parse(text) == pins
    assert lockfile.header(text) == {
        "python": "3.11",
        "platform": "linux x86_64",
        "tested": "2026-12-02, fast suite: 10 passed",
    }


def test_failures_of_a_junit_report_are_pytest_node_ids(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.test_lockfile" name="test_a[x]"><failure message="m"/></testcase>'
        '<testcase classname="tests.test_lockfile" name="test_b"/>'
        '<testcase classname="tests.orchestration.test_spec" name="test_c"><error message="e"/></testcase>'
        '<testcase classname="tests.test_lockfile.TestGroup" name="test_d"><failure/></testcase>'
        "</testsuite></testsuites>"
    )
    assert lockfile.failures(report) == [
        "tests/test_lockfile.py::test_a[x]",
        "tests/orchestration/test_spec.py::test_c",
        "tests/test_lockfile.py::TestGroup::test_d",
    ]


def test_the_readme_names_the_locked_versions():
    lock = (ROOT / "constraints.txt").read_text()
    block = lockfile.readme_block(lock)
    assert block in (ROOT / "README.md").read_text(), "run: python scripts/lockfile.py readme"
    for name in ("torch", "ray", "optuna", "mlflow", "onnxruntime"):
        assert f"| {name} | {lockfile.parse(lock)[name]} |" in block
    assert lockfile.header(lock)["python"] in block
