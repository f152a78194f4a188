"""The torch-free part of the data sets: folder checks and Fashion-MNIST's file layout, so that
validating a study does not import torch."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
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


def fashion_mnist_layout(root: str | os.PathLike | None) -> Path:
    """Torchvision's folder layout for Fashion-MNIST, from ``root`` or Debian's package."""
    return _fashion_mnist_raw(Path(root) if root else DEBIAN_FASHION_MNIST)


CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def cifar_check(name: str):
    def check(root: str | os.PathLike | None) -> None:
        if root is None or not (Path(root) / CIFAR_FOLDERS[name]).is_dir():
            raise DataError(f"{name} folder {str(root)!r} lacks {CIFAR_FOLDERS[name]}/ (the python version)")

    return check


def check_imagenet(root: str | os.PathLike | None) -> None:
    if root is None or not all((Path(root) / s).is_dir() for s in ("train", "val")):
        raise DataError(f"imagenet folder {str(root)!r} lacks train/ and val/ (ImageFolder layout)")


def check_skimage(root: str | os.PathLike | None = None) -> None:
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        raise DataError("data set 'skimage-photos' needs scikit-image (pip install scikit-image)")


DIV2K_FOLDERS = ("DIV2K_train_HR", "DIV2K_train_LR_bicubic", "DIV2K_valid_HR", "DIV2K_valid_LR_bicubic")


def check_div2k(root: str | os.PathLike | None) -> None:
    if root is None or not all((Path(root) / s).is_dir() for s in DIV2K_FOLDERS):
        raise DataError(f"div2k folder {str(root)!r} lacks {', '.join(DIV2K_FOLDERS)} (DIV2K's usual layout)")
