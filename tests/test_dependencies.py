"""The declared dependencies are the real ones: every third-party module that the project's code imports
comes from a distribution that pyproject.toml declares for that code, and the lock pins each of them."""

import ast
import functools
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN = {"paradis", "orchestration", "tests", "benchmarks"}
# a module whose distribution is not installed here (another platform) is looked up by this name
KNOWN = {"skimage": "scikit-image", "yaml": "pyyaml", "PIL": "pillow", "executorch": "executorch"}
# what each tree may import: the core, plus the extras that its code is for
TREES = {
    "paradis": ["edge"],  # the deploy exporters import ONNX and ExecuTorch on first use
    "orchestration": ["orchestration", "edge"],
    "tests": ["orchestration", "edge", "dev"],
    "benchmarks": ["orchestration", "edge", "dev"],
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(extras: list[str]) -> set[str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        reqs += PYPROJECT["project"]["optional-dependencies"][extra]
    return {_name(r) for r in reqs}


def third_party_imports(tree: str) -> dict[str, set[str]]:
    """Top-level module -> the files that import it, for every absolute import under ``tree``."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / tree).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN:
                    out.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return out


@functools.cache
def _installed() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions(module: str) -> set[str]:
    found = _installed().get(module) or [KNOWN.get(module, module)]
    return {d.lower().replace("_", "-") for d in found}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_every_third_party_import_is_declared(tree):
    allowed = declared(TREES[tree])
    missing = {
        module: sorted(files)[:3]
        for module, files in third_party_imports(tree).items()
        if not distributions(module) & allowed
    }
    assert not missing, f"imported under {tree}/ but not declared in pyproject.toml: {missing}"


def test_the_core_imports_no_orchestration_package():
    assert not {"ray", "mlflow", "optuna"} & set(third_party_imports("paradis"))


def test_the_lock_pins_every_declared_dependency():
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pinned = {_name(line) for line in lines if "==" in line and not line.startswith("#")}
    everything = declared(list(PYPROJECT["project"]["optional-dependencies"]))
    assert everything <= pinned, f"declared but not locked: {sorted(everything - pinned)}"


def test_a_requirement_name_is_read_as_pip_reads_it():
    assert _name("ray[default,tune,train]==2.60.0") == "ray"
    assert _name("executorch>=1.5,<1.6; sys_platform == 'linux'") == "executorch"
    assert _name("PyYAML>=6.0") == "pyyaml" and _name("psycopg[binary]>=3.1") == "psycopg"
