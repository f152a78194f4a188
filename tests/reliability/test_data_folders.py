"""Data folders are files we did not write: a FIFO or a link out of the folder is never read, 16-bit
images are rescaled rather than read as 8-bit, and a DIV2K folder whose pairs do not fit is refused
before Ray starts (one corpus per layout)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paradis.data import DataError, check_dataset
from paradis.data.sr import load_div2k
from paradis.data.vision import load_imagenet
from tests.image_trees import make_div2k_tree, make_imagenet_tree
from tests.orchestration.conftest import ROOT
from tests.reliability.test_hardening import HEAD, _cli, _one_line


def _sixteen_bit(path: Path, size=(40, 40)) -> np.ndarray:
    pixels = (np.arange(size[0] * size[1], dtype=np.uint32).reshape(size) * 41 % 65536).astype(np.uint16)
    Image.fromarray(pixels).save(path)
    return pixels


def _fifo(tmp_path):
    return lambda root: os.mkfifo(root / "train" / "n00000000" / "fifo.png")


def _link_out(tmp_path):
    outside = tmp_path / "outside.png"
    Image.new("RGB", (40, 40)).save(outside)
    return lambda root: (root / "train" / "n00000000" / "link.png").symlink_to(outside)


def _link_in(tmp_path):
    return lambda root: (root / "train" / "n00000000" / "again.png").symlink_to(
        root / "train" / "n00000000" / "img_0.png"
    )


# name -> (what to plant in train/n00000000 of a 3-class, 8-per-class tree, training images it then holds)
IMAGENET = {
    "fifo-named-png": (_fifo, 24),
    "link-out-of-root": (_link_out, 24),
    "link-within-root": (_link_in, 25),
}


@pytest.mark.parametrize("case", list(IMAGENET))
def test_imagenet_folders_read_only_regular_files_within_the_root(tmp_path, case):
    plant, expected = IMAGENET[case]
    root = make_imagenet_tree(tmp_path / "imagenet")
    plant(tmp_path)(root)
    splits = load_imagenet(root)
    assert len(splits.train) == expected
    assert all(Path(p).resolve().is_relative_to(root.resolve()) for p, _ in splits.train.samples)
    assert not any(p.endswith("fifo.png") for p, _ in splits.train.samples)
    x, _ = splits.train[0]  # reads without hanging
    assert x.shape == (3, 224, 224)


def test_imagenet_sixteen_bit_images_are_rescaled(tmp_path):
    from paradis.data.vision import load_rgb

    pixels = _sixteen_bit(tmp_path / "deep.png")
    rgb = np.asarray(load_rgb(str(tmp_path / "deep.png")))
    assert rgb.dtype == np.uint8 and rgb.shape == (40, 40, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(pixels / 257).astype(np.uint8))


def _div2k(tmp_path) -> Path:
    return make_div2k_tree(tmp_path / "div2k", train=2, valid=1, size=48)


def _no_x2(root):
    for part in ("train", "valid"):
        (root / f"DIV2K_{part}_LR_bicubic" / "X2").rename(root / f"DIV2K_{part}_LR_bicubic" / "X3")


def _wrong_size(root):
    Image.new("RGB", (20, 20)).save(root / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png")


def _hr_fifo(root):
    os.mkfifo(root / "DIV2K_train_HR" / "0003.png")


def _lr_link_out(root):
    lr = root / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png"
    outside = root.parent / "elsewhere.png"
    lr.rename(outside)
    lr.symlink_to(outside)


def _not_png(root):
    (root / "DIV2K_train_LR_bicubic" / "X2" / "0002x2.png").write_bytes(b"GIF89a" + b"\0" * 40)


DIV2K = {
    "no-X2": (_no_x2, "lacks DIV2K_train_LR_bicubic/X2/"),
    "lr-size-mismatch": (_wrong_size, "0001x2.png' is 20x20, but its pair 0001.png (58x48) at x2 needs 29x24"),
    "fifo-named-png": (_hr_fifo, "0003.png' is not a regular file within"),
    "link-out-of-root": (_lr_link_out, "0801x2.png' is not a regular file within"),
    "lr-not-a-png": (_not_png, "0002x2.png' is not a PNG image"),
}


@pytest.mark.parametrize("case", list(DIV2K))
def test_div2k_folders_that_do_not_fit_are_refused_before_training(tmp_path, case):
    plant, needle = DIV2K[case]
    root = _div2k(tmp_path)
    check_dataset("div2k", root)  # the tree as made is fine
    plant(root)
    with pytest.raises(DataError) as err:
        check_dataset("div2k", root)
    assert needle in str(err.value)
    with pytest.raises(DataError):
        load_div2k(root, patch_size=16, patches_per_image=1)


def test_div2k_refusal_comes_before_ray_starts(tmp_path):
    root = _div2k(tmp_path)
    _no_x2(root)
    path = tmp_path / "study.yaml"
    path.write_text(
        HEAD.replace("{name: mobilenet_v1_small}", "{name: wdsr_small}").replace(
            "{name: synthetic}", f"{{name: div2k, root: {root}}}"
        )
        + "task: super-resolution\n"
    )
    proc, _ = _cli([str(ROOT / "orchestration/run_study.py"), str(path), "--smoke"], tmp_path)
    line = _one_line(proc, "run_study")
    assert "lacks DIV2K_train_LR_bicubic/X2/" in line, line
    assert not (tmp_path / "ray").exists()


def test_div2k_sixteen_bit_images_are_rescaled(tmp_path):
    from paradis.data.sr import _read_rgb

    pixels = _sixteen_bit(tmp_path / "deep.png")
    rgb = _read_rgb(tmp_path / "deep.png")
    assert rgb.dtype.is_floating_point is False and int(rgb.max()) <= 255
    np.testing.assert_array_equal(rgb[0].numpy(), np.rint(pixels / 257).astype(np.uint8))
