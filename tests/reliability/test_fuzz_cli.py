"""Fuzzing the command lines with generated bad input: every run ends with exit 2 and one line
``PROG: error: ...`` on stderr (or, for the few generated inputs that happen to be valid, exit 0), and
never with a traceback. In process and without Ray (``--dry-run``), so that each example costs
milliseconds."""

import contextlib
import io
import string
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from orchestration.run_study import main as run_study_main  # noqa: E402
from paradis.cli import main as paradis_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "name",
    "model",
    "model.name",
    "data",
    "data.name",
    "data.train_subset",
    "training",
    "training.epochs",
    "training.method",
    "training.switches",
    "training.beta",
    "training.wide_factor",
    "training.distillation",
    "training.optimizer.lr",
    "evaluation.switches",
    "evaluation.target",
    "search.kind",
    "search.space",
    "search.variants",
    "search.samples",
    "scheduler.kind",
    "resources.cpus_per_worker",
    "resources.workers_per_trial",
    "failure.max_failures",
    "front",
    "precision",
    "device",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.printable, max_size=30),
    st.sampled_from(["[0.5, 0.5]", "[4x0.25]", "[99999999x0.1]", "[0.5, -1]", "1e999", "nan", "grid", "optuna"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _run(main, argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    return code, err.getvalue()


def _assert_clean(code, stderr: str, prog: str) -> None:
    assert code in (0, 2), (code, stderr[-2000:])
    assert "Traceback" not in stderr
    if code == 2 and prog:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        assert lines and (lines[-1].startswith(f"{prog}: error: ") or "usage:" in stderr), stderr[-2000:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_run_study_with_generated_overrides(tmp_path, overrides):
    sets = []
    for key, value in overrides:
        sets += ["--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    code, stderr = _run(run_study_main, [str(ROOT / "studies/quickstart.yaml"), "--dry-run", *sets])
    _assert_clean(code, stderr, "run_study")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(KEYS), values, max_size=6) | st.binary(max_size=200))
def test_run_study_with_generated_files(tmp_path, doc):
    path = tmp_path / "study.yaml"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(yaml.safe_dump(doc))
    code, stderr = _run(run_study_main, [str(path), "--dry-run"])
    _assert_clean(code, stderr, "run_study")


@settings(max_examples=60, deadline=None)
@given(
    # valid sizes kept small (they are profiled), the others anywhere
    size=st.lists(
        st.one_of(st.integers(-10, 32).map(str), st.integers(8193, 10**12).map(str), st.text(max_size=5)),
        min_size=3,
        max_size=3,
    ),
    classes=st.one_of(st.integers(-5, 10**8).map(str), st.text(max_size=5)),
)
def test_paradis_profile_with_generated_sizes(size, classes):
    code, stderr = _run(
        paradis_main,
        ["profile", "mobilenet_v1_small", "--switches", "[1.0]", "--input-size", *size, "--num-classes", classes],
    )
    small = all(s.lstrip("-").isdigit() and 1 <= int(s) <= 64 for s in size) and classes.isdigit()
    assert code in (0, 2) and "Traceback" not in stderr
    if not small:
        return
    assert code == 0 or "error" in stderr
