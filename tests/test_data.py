from pathlib import Path

import pytest
import torch

from paradis.data import DEBIAN_FASHION_MNIST, DataError, TensorLoader, load_dataset, make_synthetic
from paradis.registry import UnknownNameError

needs_fmnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


@needs_fmnist
def test_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("PARADIS_CACHE", str(tmp_path))
    splits = load_dataset("fashion-mnist")
    assert splits.info.num_classes == 10 and splits.info.input_size == (1, 28, 28)
    assert splits.train.images.shape == (60000, 1, 28, 28) and splits.test.images.shape == (10000, 1, 28, 28)
    assert splits.train.images.dtype == torch.uint8
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10


def test_missing_or_malformed_folders_name_the_path(tmp_path):
    with pytest.raises(DataError, match=r"'/nonexistent/fm' does not exist"):
        load_dataset("fashion-mnist", "/nonexistent/fm")
    with pytest.raises(DataError, match="lacks the IDX files"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="needs a root folder"):
        load_dataset("cifar100", None)
    with pytest.raises(DataError, match=r"lacks train/"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(UnknownNameError, match="unknown data set 'svhn'; known: cifar10, cifar100, div2k"):
        load_dataset("svhn")
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{name}.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_dataset("fashion-mnist", tmp_path)


def test_imagenet_folder_layout(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = Path(tmp_path, split, cls)
            d.mkdir(parents=True)
            Image.new("RGB", (40, 30), (10, 20, 30)).save(d / "a.png")
    splits = load_dataset("imagenet", tmp_path, image_size=32)
    assert splits.info.num_classes == 2 and splits.info.input_size == (3, 32, 32)
    x, label = splits.test[0]
    assert label in (0, 1)
    assert x.shape == (3, 32, 32)


def test_tensor_loader_order_depends_only_on_seed_and_epoch_and_ranks_are_disjoint():
    split = make_synthetic(train_size=100, test_size=10).train
    a = TensorLoader(split, 10, shuffle=True, seed=3)
    b = TensorLoader(split, 10, shuffle=True, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    b.set_epoch(3)
    assert not all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    ranks = [TensorLoader(split, 5, shuffle=True, seed=1, rank=r, world_size=2) for r in (0, 1)]
    idx = [torch.cat([x.flatten(1)[:, :4] for x, _ in loader]) for loader in ranks]
    assert idx[0].shape[0] == idx[1].shape[0] == 50
    x, _ = next(iter(a))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.0


def test_the_image_suffixes_the_checks_know_are_imagefolders():
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from paradis.data.folders import IMAGE_SUFFIXES

    assert IMAGE_SUFFIXES == IMG_EXTENSIONS
