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


def _empty_class(root):
    (root / "train" / "n00000009").mkdir()
    (root / "val" / "n00000009").mkdir()


def _classes_differ(root):
    (root / "val" / "n00000001").rename(root / "val" / "n00000007")


def _no_classes(root):
    import shutil

    shutil.rmtree(root / "val")
    (root / "val").mkdir()


def _only_a_directory_named_png(root):
    (root / "train" / "n00000009" / "a.png").mkdir(parents=True)
    (root / "val" / "n00000009").mkdir()


# name -> (a change to a 3-class tree, what the one-line refusal before Ray says)
IMAGENET_REFUSED = {
    "empty-class-folder": (_empty_class, "n00000009' holds no image"),
    "classes-differ": (_classes_differ, "train/ and val/ hold other classes (n00000001, n00000007 in one only)"),
    "no-class-folder": (_no_classes, "val' holds no class folder"),
    "directory-named-png": (_only_a_directory_named_png, "n00000009' holds no image"),
}


@pytest.mark.parametrize("case", list(IMAGENET_REFUSED))
def test_imagenet_folders_that_cannot_train_are_refused_before_ray(tmp_path, case):
    plant, needle = IMAGENET_REFUSED[case]
    root = make_imagenet_tree(tmp_path / "imagenet")
    check_dataset("imagenet", root)  # the tree as made is fine
    plant(root)
    with pytest.raises(DataError) as err:
        check_dataset("imagenet", root)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 10, None],
    ids=["zero-bytes", "header-only", "truncated"],
)
def test_an_image_that_cannot_be_read_is_one_line_naming_it(tmp_path, content):
    from paradis.data.vision import load_rgb

    path = tmp_path / "bad.png"
    if content is None:
        Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=r"cannot read image '.*bad\.png'"):
        load_rgb(str(path))


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


def _zero_size_header(root):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (root / "DIV2K_train_HR" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)


DIV2K = {
    "zero-size-header": (_zero_size_header, "0001.png': its PNG header says 0x0 pixels, not an image"),
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


def test_div2k_images_smaller_than_the_training_patches_are_refused(tmp_path):
    from paradis.config import RunConfig

    root = _div2k(tmp_path)  # LR images 24x29
    data = RunConfig.model_validate(
        {
            "task": "super-resolution",
            "model": {"name": "wdsr_small"},
            "data": {"name": "div2k", "root": str(root), "sr": {"patch_size": 32}},
        }
    ).data
    with pytest.raises(DataError, match=r"0001x2\.png' is 29x24, smaller than the training patches \(32x32"):
        check_dataset("div2k", root, data)
    check_dataset("div2k", root, data.model_copy(update={"sr": data.sr.model_copy(update={"patch_size": 24})}))


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
