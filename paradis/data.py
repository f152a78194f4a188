"""Data sets: Fashion-MNIST (the default), CIFAR-10/100, ImageNet folders and synthetic images.

Small data sets are held in memory as uint8 tensors and batched by :class:`TensorLoader`, which is
far faster than a per-sample ``DataLoader`` on a few CPU cores. ImageNet goes through torchvision's
``ImageFolder`` and a ``DataLoader``. Nothing is downloaded here: a missing or malformed folder is a
:class:`DataError` naming the path and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from paradis.datasets import (  # the torch-free part lives there
    DATASETS,
    DEBIAN_FASHION_MNIST,
    SR_DATASETS,
    DataError,
    cache_dir,
    check_dataset,
    fashion_mnist_layout,
)

__all__ = ["DATASETS", "DEBIAN_FASHION_MNIST", "DataError", "cache_dir", "check_dataset", "load_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: tuple[int, int, int]  # C, H, W as the model sees it


@dataclass
class Splits:
    """A data set's training and test splits, each either in memory or a map-style dataset."""

    info: DatasetInfo
    train: TensorSplit | torch.utils.data.Dataset
    test: TensorSplit | torch.utils.data.Dataset


@dataclass
class TensorSplit:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, count: int | None, seed: int) -> TensorSplit:
        if count is None or count >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:count].sort().values
        return TensorSplit(self.images[idx], self.labels[idx], self.mean, self.std, self.augment)

    def loader(self, batch_size: int, **kwargs) -> TensorLoader:
        return TensorLoader(self, batch_size, **kwargs)


# Per-channel (mean, std) with which the loaders normalize each data set's images in [0, 1]; a
# deployment's manifest states them (paradis.deploy).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def normalization(name: str | None, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` per channel of data set ``name`` (``None`` for one this module does not normalize)."""
    if name == "synthetic":
        return (0.5,) * channels, (0.25,) * channels
    return NORMALIZATION.get(name or "")


def load_fashion_mnist(root: str | os.PathLike | None = None) -> Splits:
    import torchvision

    layout = fashion_mnist_layout(root)
    splits = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.FashionMNIST(str(layout), train=train, download=False)
        except (RuntimeError, ValueError, OSError) as err:
            raise DataError(f"Fashion-MNIST under {str(layout)!r} is malformed: {err}") from None
        images = ds.data.unsqueeze(1).contiguous()
        splits.append(TensorSplit(images, ds.targets.long(), *NORMALIZATION["fashion-mnist"]))
    return Splits(DatasetInfo("fashion-mnist", 10, (1, 28, 28)), splits[0], splits[1])


# --- CIFAR -----------------------------------------------------------------------------------------
def load_cifar(name: str, root: str | os.PathLike | None) -> Splits:
    import torchvision

    if root is None:
        raise DataError(f"data set {name!r} needs a root folder (data.root) holding the python version")
    folder = Path(root)
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    expected = cls.base_folder
    if not (folder / expected).is_dir():
        raise DataError(f"{name} folder {str(folder)!r} lacks {expected}/ (the python version of the data set)")
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(folder), train=train, download=False)
        except (RuntimeError, ValueError, OSError) as err:
            raise DataError(f"{name} under {str(folder)!r} is malformed: {err}") from None
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        mean, std = NORMALIZATION[name]
        splits.append(TensorSplit(images, torch.tensor(ds.targets, dtype=torch.long), mean, std, augment=train))
    classes = 10 if name == "cifar10" else 100
    return Splits(DatasetInfo(name, classes, (3, 32, 32)), splits[0], splits[1])


# --- ImageNet --------------------------------------------------------------------------------------
IMAGENET_MEAN, IMAGENET_STD = NORMALIZATION["imagenet"]


def load_imagenet(root: str | os.PathLike | None, image_size: int = 224) -> Splits:
    import torchvision
    from torchvision import transforms as T

    if root is None:
        raise DataError("data set 'imagenet' needs a root folder (data.root) with train/ and val/ class folders")
    folder = Path(root)
    for sub in ("train", "val"):
        if not (folder / sub).is_dir():
            raise DataError(f"imagenet folder {str(folder)!r} lacks {sub}/ (ImageFolder layout: {sub}/<class>/<image>)")
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    val_tf = T.Compose([T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor(), normalize])
    try:
        train = torchvision.datasets.ImageFolder(str(folder / "train"), transform=train_tf)
        val = torchvision.datasets.ImageFolder(str(folder / "val"), transform=val_tf)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"imagenet folder {str(folder)!r} is malformed: {err}") from None
    if train.classes != val.classes:
        raise DataError(f"imagenet folder {str(folder)!r}: train/ and val/ hold different classes")
    return Splits(DatasetInfo("imagenet", len(train.classes), (3, image_size, image_size)), train, val)


# --- synthetic -------------------------------------------------------------------------------------
def make_synthetic(
    num_classes: int = 10,
    input_size: tuple[int, int, int] = (1, 28, 28),
    train_size: int = 512,
    test_size: int = 256,
    seed: int = 0,
) -> Splits:
    """Class templates plus noise: learnable, deterministic, no files."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, *input_size, generator=g)

    def split(n: int) -> TensorSplit:
        labels = torch.randint(num_classes, (n,), generator=g)
        noisy = templates[labels] * 0.6 + torch.rand(n, *input_size, generator=g) * 0.4
        images = (noisy * 255).round().to(torch.uint8)
        return TensorSplit(images, labels, *normalization("synthetic", input_size[0]))

    return Splits(DatasetInfo("synthetic", num_classes, tuple(input_size)), split(train_size), split(test_size))


def load_dataset(name: str, root: str | os.PathLike | None = None, **kwargs) -> Splits:
    if name == "fashion-mnist":
        return load_fashion_mnist(root)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root)
    if name == "imagenet":
        return load_imagenet(root, **kwargs)
    if name == "synthetic":
        return make_synthetic(**kwargs)
    if name in SR_DATASETS:
        from paradis.sr_data import load_sr_dataset

        return load_sr_dataset(name, root, **kwargs)
    raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")


# --- loaders ---------------------------------------------------------------------------------------
def epoch_indices(n: int, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The sample order of epoch ``epoch`` (a function of ``(seed, epoch)`` only, so that an
    interrupted run resumes with the same batches), and with ``world_size > 1`` rank ``rank``'s equal share."""
    if shuffle:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        idx = torch.arange(n)
    if world_size > 1:
        per_rank = n // world_size
        idx = idx[rank * per_rank : (rank + 1) * per_rank]
    return idx


class EpochLoader:
    """What the in-memory loaders share: the order of epoch ``e`` depends only on ``(seed, e)``, so an
    interrupted run resumes with the same batches; with ``world_size > 1`` each rank takes its own
    equal share of every epoch. Subclasses turn a batch of indices into tensors (:meth:`load`)."""

    def __init__(
        self,
        split,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
    ):
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        return epoch_indices(len(self.split), self.shuffle, self.seed, self.epoch, self.rank, self.world_size)

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7)  # augmentation draws
        for start in range(0, len(idx), self.batch_size):
            batch = idx[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                break
            x, y = self.load(batch, g)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def load(self, batch: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class TensorLoader(EpochLoader):
    """Batches of an in-memory classification split: normalized float images and labels."""

    def __init__(self, split: TensorSplit, batch_size: int, **kwargs):
        super().__init__(split, batch_size, **kwargs)
        c = split.images.shape[1]
        self._mean = torch.tensor(split.mean, dtype=torch.float32).view(1, c, 1, 1)
        self._std = torch.tensor(split.std, dtype=torch.float32).view(1, c, 1, 1)

    def load(self, batch: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.split.images[batch].float().div_(255)
        if self.split.augment:
            x = _crop_flip(x, g)
        return (x - self._mean) / self._std, self.split.labels[batch]


def _crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per image (CIFAR's augmentation)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    out = torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(zip(dy.tolist(), dx.tolist()))])
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def make_loader(
    split,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
):
    """The split's own loader for in-memory splits (:class:`TensorLoader`, or
    :class:`paradis.sr_data.SRLoader` for image pairs), a ``DataLoader`` for folder data sets; a data set
    of whole images of different sizes (DIV2K validation) gives one image per batch."""
    if hasattr(split, "loader"):
        return split.loader(
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            device=device,
        )
    whole = getattr(getattr(split, "dataset", split), "whole_images", False)
    sampler = None
    if world_size > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(
            split, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return torch.utils.data.DataLoader(
        split,
        batch_size=1 if whole else batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last and not whole,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def subset(split, count: int | None, seed: int):
    """The first ``count`` of a fixed random permutation of ``split`` (all of it when ``None``)."""
    if isinstance(split, TensorSplit) or hasattr(split, "subset"):  # in-memory splits (also SR pairs)
        return split.subset(count, seed)
    if count is None or count >= len(split):
        return split
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.Subset(split, torch.randperm(len(split), generator=g)[:count].tolist())
