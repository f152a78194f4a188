"""Classification data sets: Fashion-MNIST (the default), CIFAR-10/100, ImageNet folders and
synthetic images. Nothing is downloaded: a missing or malformed folder is a :class:`DataError`
naming the path and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from paradis.data.folders import DataError, fashion_mnist_layout, image_file, to_8bit
from paradis.data.registry import dataset_info, normalization
from paradis.data.splits import Splits, TensorSplit
from paradis.util import first_line


def load_fashion_mnist(root: str | os.PathLike | None = None, options=None, seed: int = 0) -> Splits:
    import torchvision

    layout = fashion_mnist_layout(root)
    splits = []
    for train in (True, False):
        try:
            ds = torchvision.datasets.FashionMNIST(str(layout), train=train, download=False)
        except (RuntimeError, ValueError, OSError) as err:
            raise DataError(f"Fashion-MNIST under {str(layout)!r} is malformed: {err}") from None
        images = ds.data.unsqueeze(1).contiguous()
        splits.append(TensorSplit(images, ds.targets.long(), *normalization("fashion-mnist", 1)))
    return Splits(dataset_info("fashion-mnist"), splits[0], splits[1])


# --- CIFAR -----------------------------------------------------------------------------------------
def load_cifar_named(name: str, root: str | os.PathLike | None) -> Splits:
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
        mean, std = normalization(name, 3)
        splits.append(TensorSplit(images, torch.tensor(ds.targets, dtype=torch.long), mean, std, augment=train))
    return Splits(dataset_info(name), splits[0], splits[1])


def load_cifar(root: str | os.PathLike | None, options=None, seed: int = 0) -> Splits:
    return load_cifar_named(options.name, root)


# --- ImageNet --------------------------------------------------------------------------------------
def load_imagenet(root: str | os.PathLike | None, options=None, seed: int = 0) -> Splits:
    """ImageFolder ``train/`` and ``val/``, cropped to ``options.image_size`` (224 by default)."""
    import torchvision
    from torchvision import transforms as T
    from torchvision.datasets.folder import IMG_EXTENSIONS

    if root is None:
        raise DataError("data set 'imagenet' needs a root folder (data.root) with train/ and val/ class folders")
    folder = Path(root)
    for sub in ("train", "val"):
        if not (folder / sub).is_dir():
            raise DataError(f"imagenet folder {str(folder)!r} lacks {sub}/ (ImageFolder layout: {sub}/<class>/<image>)")
    image_size = getattr(options, "image_size", 224)
    normalize = T.Normalize(*normalization("imagenet", 3))
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    val_tf = T.Compose([T.Resize(int(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor(), normalize])

    def readable(path: str) -> bool:
        return path.lower().endswith(IMG_EXTENSIONS) and image_file(Path(path), folder)

    kw = dict(is_valid_file=readable, loader=load_rgb)
    try:
        train = torchvision.datasets.ImageFolder(str(folder / "train"), transform=train_tf, **kw)
        val = torchvision.datasets.ImageFolder(str(folder / "val"), transform=val_tf, **kw)
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"imagenet folder {str(folder)!r} is malformed: {err}") from None
    if train.classes != val.classes:
        raise DataError(f"imagenet folder {str(folder)!r}: train/ and val/ hold different classes")
    info = dataset_info("imagenet").sized(num_classes=len(train.classes), input_size=(3, image_size, image_size))
    return Splits(info, train, val)


def load_rgb(path: str):
    """An image file as an 8-bit RGB PIL image; 16-bit greyscale pixels are rescaled from [0, 65535]
    (PIL's own conversion clips them to [0, 255])."""
    import numpy as np
    from PIL import Image

    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # truncated, empty, lying
        raise DataError(f"cannot read image {path!r}: {first_line(err)}") from None
    if image.mode.startswith("I"):  # 16-bit (I;16, I;16B) or 32-bit integer greyscale
        pixels = np.asarray(image)
        if image.mode == "I" and pixels.max(initial=0) <= 65535 and pixels.min(initial=0) >= 0:
            pixels = pixels.astype(np.uint16)
        image = Image.fromarray(to_8bit(pixels.astype(pixels.dtype.newbyteorder("=")), path), mode="L")
    return image.convert("RGB")


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

    info = dataset_info("synthetic").sized(num_classes=num_classes, input_size=tuple(input_size))
    return Splits(info, split(train_size), split(test_size))


def load_synthetic(root=None, options=None, seed: int = 0) -> Splits:
    return make_synthetic(train_size=options.synthetic_train, test_size=options.synthetic_test, seed=seed)


def load_dataset(name: str, root: str | os.PathLike | None = None, **options) -> Splits:
    """Load a registered data set by name; ``options`` are its data-section settings (``image_size``,
    ``synthetic_train``, ``sr``...), defaults where not given."""
    from types import SimpleNamespace

    defaults = {"image_size": 224, "synthetic_train": 512, "synthetic_test": 256, "sr": None}
    seed = options.pop("seed", 0)
    if name == "synthetic" and ({"train_size", "test_size", "num_classes", "input_size"} & set(options)):
        return make_synthetic(seed=seed, **options)
    return dataset_info(name).load(root, SimpleNamespace(name=name, **{**defaults, **options}), seed)
