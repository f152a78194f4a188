"""The torch-free part of the data sets: folder checks and Fashion-MNIST's file layout, so that
validating a study does not import torch."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import struct
from pathlib import Path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# scikit-image's photographs (no drawings, charts or synthetic images); motorcycle_right is left out
# because it is nearly the same picture as motorcycle_left.
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock_motion",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "ihc",
    "moon",
    "motorcycle_left",
    "retina",
    "rocket",
)
DEFAULT_VAL_IMAGES = ("camera", "coffee", "rocket")
_FMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataError(ValueError):
    """A data set that cannot be read: names the path and what was expected there."""


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``'s real location (symbolic links followed) lies within ``root``'s: a data folder's
    links may point within it, never out of it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return False


def regular_file(path: Path) -> bool:
    """A regular file: never a FIFO, socket or device, which would block or never end a read."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def image_file(path: Path, root: Path) -> bool:
    """A file the folder loaders may read: regular, and within the data folder ``root``."""
    return regular_file(path) and inside(path, root)


def to_8bit(image, path) -> object:
    """A decoded image's pixels as 8 bits: 16-bit images (PNG allows them) rescaled from [0, 65535], not
    read as if they were [0, 255]; any other pixel type is refused."""
    import numpy as np

    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise DataError(f"image {str(path)!r} has {image.dtype} pixels; 8- or 16-bit images are read")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# what ImageFolder reads (torchvision's IMG_EXTENSIONS; tests/test_data.py holds them equal)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_SIDE = 30_000  # pixels: DIV2K's images are at most 2040 wide; a header beyond this is not an image


def png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's header (24 bytes, no decoding); :class:`DataError` for a file
    that is no PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{str(path)!r} is not a PNG image (no PNG header)")
    width, height = struct.unpack(">II", head[16:24])
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise DataError(f"{str(path)!r}: its PNG header says {width}x{height} pixels, not an image (1 to {MAX_SIDE})")
    return width, height


def cache_dir() -> Path:
    base = os.environ.get("PARADIS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paradis"
    )
    return Path(base)


# --- Fashion-MNIST ---------------------------------------------------------------------------------
def _fashion_mnist_raw(root: Path) -> Path:
    """A folder in torchvision's layout (``<dir>/FashionMNIST/raw``) with the four IDX files.

    ``root`` may hold the files directly (Debian's ``dataset-fashion-mnist``), gzipped or not, or be
    torchvision's layout already. Gzipped files are decompressed once into the cache.
    """
    if not root.is_dir():
        raise DataError(
            f"Fashion-MNIST folder {str(root)!r} does not exist; expected the IDX files "
            f"({', '.join(_FMNIST_FILES)}, optionally .gz) - on Debian: apt-get install dataset-fashion-mnist"
        )
    for candidate in (root / "FashionMNIST" / "raw", root / "raw", root):
        if all((candidate / f).is_file() for f in _FMNIST_FILES):
            return candidate.parent.parent if candidate.name == "raw" else _link_layout(candidate)
        if all((candidate / f"{f}.gz").is_file() for f in _FMNIST_FILES):
            return _decompress(candidate)
    raise DataError(
        f"Fashion-MNIST folder {str(root)!r} lacks the IDX files; expected {', '.join(_FMNIST_FILES)} "
        "(optionally .gz) there or under FashionMNIST/raw"
    )


def _layout_for(source: Path) -> Path:
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / f"fashion-mnist-{digest}"


def _link_layout(folder: Path) -> Path:
    dest = _layout_for(folder)
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in _FMNIST_FILES:
        link = raw / f
        if not link.exists():
            link.symlink_to((folder / f).resolve())
    return dest


def _decompress(folder: Path) -> Path:
    dest = _layout_for(folder)
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in _FMNIST_FILES:
        target = raw / f
        if target.is_file():
            continue
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        try:
            with gzip.open(folder / f"{f}.gz", "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
        except (OSError, EOFError) as err:
            tmp.unlink(missing_ok=True)
            raise DataError(f"Fashion-MNIST file {str(folder / f)!r}.gz is not a readable gzip file: {err}") from None
        os.replace(tmp, target)  # atomic: concurrent trials never see half a file
    return dest


def fashion_mnist_layout(root: str | os.PathLike | None, options=None) -> Path:
    """Torchvision's folder layout for Fashion-MNIST, from ``root`` or Debian's package."""
    return _fashion_mnist_raw(Path(root) if root else DEBIAN_FASHION_MNIST)


CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def cifar_check(name: str):
    def check(root: str | os.PathLike | None, options=None) -> None:
        if root is None or not (Path(root) / CIFAR_FOLDERS[name]).is_dir():
            raise DataError(f"{name} folder {str(root)!r} lacks {CIFAR_FOLDERS[name]}/ (the python version)")

    return check


def check_imagenet(root: str | os.PathLike | None, options=None) -> None:
    """train/ and val/ with the same class folders (ImageFolder numbers the classes of each split by
    their sorted names: other names would silently swap labels), each class of train/ with an image."""
    if root is None or not all((Path(root) / s).is_dir() for s in ("train", "val")):
        raise DataError(f"imagenet folder {str(root)!r} lacks train/ and val/ (ImageFolder layout)")
    folder = Path(root)
    classes = {}
    for split in ("train", "val"):
        classes[split] = sorted(p.name for p in (folder / split).iterdir() if p.is_dir() and inside(p, folder))
        if not classes[split]:
            raise DataError(f"imagenet folder {str(folder / split)!r} holds no class folder")
    if classes["train"] != classes["val"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))[:5]
        raise DataError(
            f"imagenet folder {str(folder)!r}: train/ and val/ hold other classes ({', '.join(only)} in one "
            "only); the labels of one split would not be the other's"
        )
    for name in classes["train"]:
        with os.scandir(folder / "train" / name) as entries:
            if not any(e.name.lower().endswith(IMAGE_SUFFIXES) and image_file(Path(e.path), folder) for e in entries):
                raise DataError(f"imagenet class folder {str(folder / 'train' / name)!r} holds no image")


def check_skimage(root: str | os.PathLike | None = None, options=None) -> None:
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        raise DataError("data set 'skimage-photos' needs scikit-image (pip install scikit-image)")


DIV2K_FOLDERS = ("DIV2K_train_HR", "DIV2K_train_LR_bicubic", "DIV2K_valid_HR", "DIV2K_valid_LR_bicubic")


def check_div2k(root: str | os.PathLike | None, options=None) -> None:
    """The layout, and every image pair of both parts at the data section's scale (headers only)."""
    if root is None or not all((Path(root) / s).is_dir() for s in DIV2K_FOLDERS):
        raise DataError(f"div2k folder {str(root)!r} lacks {', '.join(DIV2K_FOLDERS)} (DIV2K's usual layout)")
    sr = getattr(options, "sr", None)
    scale, patch = getattr(sr, "scale", 2), getattr(sr, "patch_size", 0)
    div2k_files(root, "train", scale, min_side=patch)  # training crops patches of that side from each LR image
    div2k_files(root, "valid", scale)


def div2k_files(root: str | os.PathLike | None, part: str, scale: int, min_side: int = 1) -> list[tuple[Path, Path]]:
    """``(lr, hr)`` file pairs of DIV2K's ``train`` or ``valid`` part, each a regular PNG file within
    ``root`` whose LR size is its HR size divided by ``scale`` (rounded down, as DIV2K's bicubic images
    are) and at least ``min_side`` pixels each way; a missing folder or file, or a pair that does not fit,
    is a :class:`DataError` naming it."""
    if root is None:
        raise DataError("data set 'div2k' needs a root folder (data.root) holding DIV2K_train_HR/ etc.")
    folder = Path(root)
    hr_dir = folder / f"DIV2K_{part}_HR"
    lr_dir = folder / f"DIV2K_{part}_LR_bicubic" / f"X{scale}"
    for d in (hr_dir, lr_dir):
        if not d.is_dir():
            raise DataError(f"div2k folder {str(folder)!r} lacks {d.relative_to(folder)}/ (DIV2K's usual layout)")
    pairs = []
    for hr in sorted(hr_dir.glob("*.png")):
        lr = lr_dir / f"{hr.stem}x{scale}.png"
        for path in (hr, lr):
            if not path.exists():
                raise DataError(f"div2k: {str(lr)!r} is missing (the x{scale} bicubic image of {hr.name})")
            if not image_file(path, folder):
                raise DataError(f"div2k: {str(path)!r} is not a regular file within {str(folder)!r}; refused")
        (hw, hh), (lw, lh) = png_size(hr), png_size(lr)
        if (lw, lh) != (hw // scale, hh // scale):
            raise DataError(
                f"div2k: {str(lr)!r} is {lw}x{lh}, but its pair {hr.name} ({hw}x{hh}) at x{scale} needs "
                f"{hw // scale}x{hh // scale}"
            )
        if min(lw, lh) < min_side:
            raise DataError(
                f"div2k: {str(lr)!r} is {lw}x{lh}, smaller than the training patches ({min_side}x{min_side}, "
                "sr.patch_size)"
            )
        pairs.append((lr, hr))
    if not pairs:
        raise DataError(f"div2k folder {str(hr_dir)!r} holds no .png image")
    return pairs
