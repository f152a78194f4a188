"""Data sets: the torch-free registry and folder checks, in-memory splits and loaders, and the loaders
of each data set (``vision``: classification; ``sr``: super-resolution image pairs).

Names load on first use, so that ``from paradis.data import check_dataset`` does not import torch.
"""

from typing import TYPE_CHECKING

from paradis.util import lazy_names

_LAZY = {
    "DataError": "paradis.data.folders",
    "DEBIAN_FASHION_MNIST": "paradis.data.folders",
    "SKIMAGE_PHOTOS": "paradis.data.folders",
    "DEFAULT_VAL_IMAGES": "paradis.data.folders",
    "cache_dir": "paradis.data.folders",
    "DatasetInfo": "paradis.data.registry",
    "check_dataset": "paradis.data.registry",
    "dataset_info": "paradis.data.registry",
    "list_datasets": "paradis.data.registry",
    "normalization": "paradis.data.registry",
    "register_dataset": "paradis.data.registry",
    "EpochLoader": "paradis.data.splits",
    "Splits": "paradis.data.splits",
    "TensorLoader": "paradis.data.splits",
    "TensorSplit": "paradis.data.splits",
    "holdout": "paradis.data.splits",
    "make_loader": "paradis.data.splits",
    "subset": "paradis.data.splits",
    "without_augmentation": "paradis.data.splits",
    "load_dataset": "paradis.data.vision",
    "make_synthetic": "paradis.data.vision",
}
__all__ = [  # noqa: RUF022 (grouped as _LAZY)
    "DataError",
    "DEBIAN_FASHION_MNIST",
    "SKIMAGE_PHOTOS",
    "DEFAULT_VAL_IMAGES",
    "cache_dir",
    "DatasetInfo",
    "check_dataset",
    "dataset_info",
    "list_datasets",
    "normalization",
    "register_dataset",
    "EpochLoader",
    "Splits",
    "TensorLoader",
    "TensorSplit",
    "holdout",
    "make_loader",
    "subset",
    "without_augmentation",
    "load_dataset",
    "make_synthetic",
]


__getattr__ = lazy_names("paradis.data", _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from paradis.data.folders import DEBIAN_FASHION_MNIST, DEFAULT_VAL_IMAGES, SKIMAGE_PHOTOS, DataError, cache_dir
    from paradis.data.registry import (
        DatasetInfo,
        check_dataset,
        dataset_info,
        list_datasets,
        normalization,
        register_dataset,
    )
    from paradis.data.splits import (
        EpochLoader,
        Splits,
        TensorLoader,
        TensorSplit,
        holdout,
        make_loader,
        subset,
        without_augmentation,
    )
    from paradis.data.vision import load_dataset, make_synthetic
