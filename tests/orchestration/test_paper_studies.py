"""Every paper-scale study (``studies/paper/``) runs with ``--smoke`` on real image folders in ImageNet's
and DIV2K's layouts: the folder loaders, not the synthetic stand-ins, feed its trials (slow)."""

from pathlib import Path

import pytest

from tests.image_trees import make_div2k_tree, make_imagenet_tree
from tests.orchestration.conftest import ROOT, mlflow_runs, run_study

pytestmark = pytest.mark.slow

PAPER = sorted((ROOT / "studies" / "paper").glob("*.yaml"))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("trees")
    return {"imagenet": make_imagenet_tree(base / "imagenet"), "div2k": make_div2k_tree(base / "div2k")}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_study_runs_on_its_folder_layout(path, trees, study_env, tmp_path):
    import yaml

    spec = yaml.safe_load(path.read_text())
    data_name = spec["data"]["name"]
    assert data_name in trees, f"{path.name}: no generated tree for data set {data_name!r}"
    batch = 8 if data_name == "imagenet" else 4  # the tree's 24 images (DIV2K: patches)
    args = [str(path), "--smoke", f"--set=data.root={trees[data_name]}", f"--set=training.batch_size={batch}"]
    if "front" in spec:  # the front's validation images come out of the tree's training images
        args.append("--set=front.validation=8")
    # two one-step epochs of small images: the point is which files feed the trials, not what they learn
    args += ["--set=training.max_steps_per_epoch=1", "--set=failure.max_failures=0"]
    if data_name == "imagenet":
        args.append("--set=data.image_size=32")
    proc = run_study(args, study_env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, parents, children = mlflow_runs(Path(study_env["PARADIS_HOME"]) / "mlflow.db", spec["tracking"]["experiment"])
    assert len(parents) == 1 and children
    assert all(c.info.status == "FINISHED" for c in children), [c.info.run_name for c in children]
    # the trials read the folder, not synthetic images or the built-in photographs
    names = {c.data.params.get("data.name") for c in children}
    roots = {c.data.params.get("data.root") for c in children}
    assert names == {data_name} and roots == {str(trees[data_name])}, (names, roots)
