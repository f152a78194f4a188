"""Data set registry, torch-free: what each data set is (:class:`DatasetInfo`) beside how it loads.

An entry gives the task it serves, its classes and image size, the normalization its loader applies
(a deployment's manifest states it), a cheap check of its folder (run before any training starts)
and the dotted path of its loader, imported on first use. A loader is called as
``loader(root, options, seed)``: ``options`` is the run's data section (read by attribute), so the
data layer never imports the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Any

import paradis.data.folders as folders
from paradis.registry import Registry

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
CLASSIFICATION = "classification"
SUPER_RESOLUTION = "super-resolution"


@dataclass(frozen=True)
class DatasetInfo:
    """A data set as the models see it. ``num_classes`` is ``None`` for image pairs."""

    name: str
    num_classes: int | None
    input_size: tuple[int, ...]  # C, H, W
    task: str = CLASSIFICATION
    normalization: Normalization | None = None
    loader: str = field(default="", repr=False)  # "module:function"
    # check(root, data options): cheap, torch-free, before any training starts
    check: Callable[[str | os.PathLike | None, Any], object] | None = field(default=None, repr=False, compare=False)
    needs_root: bool = False
    description: str = ""

    def sized(self, **changes: Any) -> DatasetInfo:
        """This entry with what a loaded instance found (classes of an ImageFolder, crop or patch size)."""
        return replace(self, **changes)

    def load(self, root: str | os.PathLike | None, options: Any, seed: int):
        module, name = self.loader.split(":")
        return getattr(import_module(module), name)(root, options, seed)


_V, _S = "paradis.data.vision", "paradis.data.sr"
_CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
DATASETS: Registry[DatasetInfo] = Registry("data set")
for _info in (
    DatasetInfo(
        "fashion-mnist",
        10,
        (1, 28, 28),
        normalization=((0.2860,), (0.3530,)),
        loader=f"{_V}:load_fashion_mnist",
        check=folders.fashion_mnist_layout,
        description="Fashion-MNIST (Debian's dataset-fashion-mnist by default)",
    ),
    DatasetInfo(
        "cifar10",
        10,
        (3, 32, 32),
        normalization=_CIFAR,
        loader=f"{_V}:load_cifar",
        check=folders.cifar_check("cifar10"),
        needs_root=True,
    ),
    DatasetInfo(
        "cifar100",
        100,
        (3, 32, 32),
        normalization=_CIFAR,
        loader=f"{_V}:load_cifar",
        check=folders.cifar_check("cifar100"),
        needs_root=True,
    ),
    DatasetInfo(
        "imagenet",
        1000,
        (3, 224, 224),
        normalization=((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        loader=f"{_V}:load_imagenet",
        check=folders.check_imagenet,
        needs_root=True,
    ),
    DatasetInfo(
        "synthetic",
        10,
        (1, 28, 28),
        normalization=((0.5,), (0.25,)),
        loader=f"{_V}:load_synthetic",
        description="class templates plus noise: learnable, deterministic, no files",
    ),
    DatasetInfo(
        "skimage-photos",
        None,
        (3, 32, 32),
        task=SUPER_RESOLUTION,
        loader=f"{_S}:load_photos",
        check=folders.check_skimage,
        description="scikit-image's photographs, bicubic x2 (built in)",
    ),
    DatasetInfo(
        "div2k",
        None,
        (3, 48, 48),
        task=SUPER_RESOLUTION,
        loader=f"{_S}:load_div2k_splits",
        check=folders.check_div2k,
        needs_root=True,
    ),
):
    DATASETS.add(_info.name, _info)


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a data set; a name is registered once."""
    return DATASETS.add(info.name, info)


def list_datasets(task: str | None = None) -> list[str]:
    return DATASETS.names(lambda d: task is None or d.task == task)


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


def check_dataset(name: str, root: str | os.PathLike | None, options: Any = None) -> None:
    """Cheap check that a data set can be read, before any training starts (raises DataError);
    ``options``: the run's data section (DIV2K's scale)."""
    info = dataset_info(name)
    if info.check is not None:
        info.check(root, options)


def normalization(name: str | None, channels: int) -> Normalization | None:
    """``(mean, std)`` per channel with which data set ``name``'s loader normalizes images in [0, 1]
    (``None`` for one it does not normalize); synthetic images are normalized alike in every channel."""
    info = DATASETS.get(name) if name in DATASETS else None
    if info is None or info.normalization is None:
        return None
    mean, std = info.normalization
    return (mean * channels, std * channels) if len(mean) == 1 and channels > 1 else (mean, std)
