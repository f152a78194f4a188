"""Tiny generated image folders in the layouts of ImageNet (``train/<class>/``, ``val/<class>/``) and
DIV2K (``DIV2K_{train,valid}_HR/``, ``DIV2K_{train,valid}_LR_bicubic/X<s>/``), for tests that read real
files through the folder loaders."""

from pathlib import Path

import torch


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def make_imagenet_tree(
    root: Path, classes: int = 3, train: int = 8, val: int = 2, size: int = 40, seed: int = 0
) -> Path:
    """``classes`` class folders with ``train`` and ``val`` PNG images each: a class is a colour
    plus noise, so a model can learn it."""
    g = torch.Generator().manual_seed(seed)
    for c in range(classes):
        colour = torch.randint(0, 256, (3, 1, 1), generator=g)
        for part, count in (("train", train), ("val", val)):
            folder = root / part / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = torch.randint(-40, 41, (3, size, size + 8 * (i % 2)), generator=g)
                _save_png((colour + noise).clamp(0, 255).to(torch.uint8), folder / f"img_{i}.png")
    return root


def make_div2k_tree(root: Path, scale: int = 2, train: int = 2, valid: int = 1, size: int = 112, seed: int = 0) -> Path:
    """DIV2K's HR images and their bicubic x``scale`` LR images, numbered as DIV2K numbers them."""
    from paradis.data.sr import bicubic_downscale

    g = torch.Generator().manual_seed(seed)
    names = {"train": [f"{i:04d}" for i in range(1, train + 1)], "valid": [f"{801 + i:04d}" for i in range(valid)]}
    for part, numbers in names.items():
        hr_dir, lr_dir = root / f"DIV2K_{part}_HR", root / f"DIV2K_{part}_LR_bicubic" / f"X{scale}"
        hr_dir.mkdir(parents=True, exist_ok=True)
        lr_dir.mkdir(parents=True, exist_ok=True)
        for n in numbers:
            hr = torch.randint(0, 256, (3, size, size + 10), generator=g, dtype=torch.uint8)
            lr, _ = bicubic_downscale(hr, scale)
            _save_png(hr, hr_dir / f"{n}.png")
            _save_png(lr, lr_dir / f"{n}x{scale}.png")
    return root
