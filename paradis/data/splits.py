"""In-memory splits and their loaders, shared by every data set (classification and image pairs).

Small data sets are held in memory as uint8 tensors and batched by an :class:`EpochLoader`, far faster
than a per-sample ``DataLoader`` on a few CPU cores; folder data sets (ImageNet, DIV2K) go through
torchvision's datasets and a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paradis.data.registry import DatasetInfo


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

    def batches(self, batch_size: int, **kwargs) -> TensorLoader:
        return TensorLoader(self, batch_size, **kwargs)


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
    :class:`paradis.data.sr.SRLoader` for image pairs), a ``DataLoader`` for folder data sets; a data set
    of whole images of different sizes (DIV2K validation) gives one image per batch."""
    # ``batches``, not ``loader``: ImageFolder has a ``loader`` attribute of its own (its image reader)
    if callable(getattr(split, "batches", None)):
        return split.batches(
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


def holdout(split, n_train: int | None, n_val: int, seed: int):
    """Disjoint training and validation parts of ``split`` from one fixed random permutation: at most
    ``n_train`` images to train on (all the others when ``None``) and ``n_val`` held out, without
    augmentation, for selection steps."""
    total = len(split)
    n_train = total - n_val if n_train is None else min(n_train, total - n_val)
    if n_train <= 0:
        raise ValueError(f"holding out {n_val} images leaves none of the {total} to train on")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    parts = perm[:n_train].sort().values, perm[n_train : n_train + n_val].sort().values
    if isinstance(split, TensorSplit):
        train, val = (
            TensorSplit(split.images[i], split.labels[i], split.mean, split.std, split.augment) for i in parts
        )
        return train, TensorSplit(val.images, val.labels, val.mean, val.std, augment=False)
    if hasattr(split, "select"):
        return split.select(parts[0]), split.select(parts[1], augment=False)
    return tuple(torch.utils.data.Subset(split, i.tolist()) for i in parts)


def without_augmentation(split):
    """The same images without training augmentation (for BN calibration and selection)."""
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images, split.labels, split.mean, split.std, augment=False)
    return split
