"""Super-resolution data: DIV2K in its usual layout, and a built-in set of real photographs.

Batches are ``(lr, hr)`` pairs of float images in ``[0, 1]`` (``N x C x h x w`` and
``N x C x sh x sw`` for scale ``s``); the model subtracts its own image mean.

- ``skimage-photos`` (the default, nothing to download): the photographs that scikit-image ships in
  ``skimage/data``, converted to RGB, bicubic-downscaled (antialiased, as MATLAB's ``imresize``) and
  quantized to 8 bits. Training and validation are split **by image**: the held-out images
  (``val_images``) give no training patch. Training uses LR patches on a grid (with random flips and
  transpositions); validation uses the whole held-out images, or patches of them (``eval_patch``).
- ``div2k``: ``DIV2K_train_HR/``, ``DIV2K_train_LR_bicubic/X{s}/`` and the ``valid`` siblings under a
  folder; training takes random LR patches (``patches_per_image`` per image and epoch), validation
  the whole validation images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from paradis.data.folders import DEFAULT_VAL_IMAGES, SKIMAGE_PHOTOS, DataError, div2k_files, to_8bit
from paradis.data.registry import dataset_info
from paradis.data.splits import EpochLoader, Splits
from paradis.util import first_line


# --- splits and loading ----------------------------------------------------------------------------
@dataclass
class SRSplit:
    """Pairs of 8-bit images: stacked tensors (patches of one size) or lists (whole images)."""

    lr: torch.Tensor | list[torch.Tensor]  # uint8, C x h x w each
    hr: torch.Tensor | list[torch.Tensor]  # uint8, C x sh x sw each
    sources: list[str]  # the photograph each pair comes from
    augment: bool = False

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def stacked(self) -> bool:
        return isinstance(self.lr, torch.Tensor)

    def batches(self, batch_size: int, **kwargs) -> SRLoader:
        return SRLoader(self, batch_size, **kwargs)

    def subset(self, count: int | None, seed: int) -> SRSplit:
        if count is None or count >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:count].sort().values
        if self.stacked:
            lr, hr = self.lr[idx], self.hr[idx]
        else:
            lr, hr = [self.lr[i] for i in idx.tolist()], [self.hr[i] for i in idx.tolist()]
        return SRSplit(lr, hr, [self.sources[i] for i in idx.tolist()], self.augment)


def _dihedral(lr: torch.Tensor, hr: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flips (and, for square patches, transposition) of each LR/HR pair."""
    n = lr.shape[0]
    for dim in (-1, -2):
        flip = torch.rand(n, generator=g) < 0.5
        lr = torch.where(flip.view(-1, 1, 1, 1), lr.flip(dim), lr)
        hr = torch.where(flip.view(-1, 1, 1, 1), hr.flip(dim), hr)
    if lr.shape[-1] == lr.shape[-2]:
        t = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
        lr = torch.where(t, lr.transpose(-1, -2), lr)
        hr = torch.where(t, hr.transpose(-1, -2), hr)
    return lr, hr


class SRLoader(EpochLoader):
    """Batches of an in-memory :class:`SRSplit` as ``(lr, hr)`` in [0, 1]; whole-image splits give one
    image per batch."""

    def __init__(self, split: SRSplit, batch_size: int, *, drop_last: bool = False, **kwargs):
        super().__init__(split, batch_size if split.stacked else 1, drop_last=drop_last and split.stacked, **kwargs)

    def load(self, batch: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.split.stacked:
            lr, hr = self.split.lr[batch], self.split.hr[batch]
        else:
            i = int(batch[0])
            lr, hr = self.split.lr[i].unsqueeze(0), self.split.hr[i].unsqueeze(0)
        if self.split.augment:
            lr, hr = _dihedral(lr, hr, g)
        return lr.float().div_(255), hr.float().div_(255)


# --- images ----------------------------------------------------------------------------------------
def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """``H x W`` grey, ``H x W x 3`` RGB or ``H x W x 4`` RGBA uint8 -> ``3 x H x W`` RGB uint8."""
    if image.ndim == 2:
        image = image.unsqueeze(-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise DataError(f"cannot read an image of shape {tuple(image.shape)} as RGB")
    image = image[..., :3] if image.shape[-1] >= 3 else image.expand(-1, -1, 3)
    return image.permute(2, 0, 1).contiguous()


def bicubic_downscale(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lr, hr)``: ``hr`` (uint8 ``C x H x W``) cropped to a multiple of ``scale`` and its antialiased
    bicubic downscaling, rounded to 8 bits (as the LR images of DIV2K are stored)."""
    h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
    hr = hr[:, :h, :w].contiguous()
    lr = F.interpolate(
        hr.unsqueeze(0).float(), size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False
    )
    return lr.squeeze(0).clamp(0, 255).round().to(torch.uint8), hr


def skimage_photo_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise DataError("data set 'skimage-photos' needs scikit-image (pip install scikit-image)") from None
    return Path(skimage.__file__).parent / "data"


def load_photo(name: str) -> torch.Tensor:
    """One of :data:`SKIMAGE_PHOTOS` as a ``3 x H x W`` uint8 RGB tensor."""
    if name not in SKIMAGE_PHOTOS:
        raise DataError(f"unknown photograph {name!r}; known: {', '.join(SKIMAGE_PHOTOS)}")
    import numpy as np
    import skimage.io

    folder = skimage_photo_dir()
    files = [folder / f"{name}{ext}" for ext in (".png", ".jpg")]
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        raise DataError(f"photograph {name!r} is missing from {str(folder)!r}")
    return to_rgb(torch.from_numpy(np.ascontiguousarray(skimage.io.imread(path))))


def grid_patches(
    lr: torch.Tensor, hr: torch.Tensor, patch: int, stride: int, scale: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``patch``-sided LR patches on a grid of ``stride`` and the matching HR patches."""
    h, w = lr.shape[-2:]
    ys = range(0, h - patch + 1, stride)
    xs = range(0, w - patch + 1, stride)
    lrs = [lr[:, y : y + patch, x : x + patch] for y in ys for x in xs]
    hrs = [hr[:, y * scale : (y + patch) * scale, x * scale : (x + patch) * scale] for y in ys for x in xs]
    if not lrs:
        return lr.new_empty(0, lr.shape[0], patch, patch), hr.new_empty(0, hr.shape[0], patch * scale, patch * scale)
    return torch.stack(lrs), torch.stack(hrs)


def make_photo_splits(
    *,
    scale: int = 2,
    patch_size: int = 32,
    patch_stride: int | None = None,
    max_patches_per_image: int = 128,
    val_images: Sequence[str] = DEFAULT_VAL_IMAGES,
    images: Sequence[str] = SKIMAGE_PHOTOS,
    eval_patch: int | None = None,
    seed: int = 0,
) -> Splits:
    """Training patches from the photographs not in ``val_images``; validation from those only."""
    unknown = [n for n in (*images, *val_images) if n not in SKIMAGE_PHOTOS]
    if unknown:
        raise DataError(f"unknown photograph(s) {', '.join(map(repr, unknown))}; known: {', '.join(SKIMAGE_PHOTOS)}")
    train_names = [n for n in images if n not in val_images]
    if not train_names or not val_images:
        raise DataError("the photographs split into no training or no validation image")
    stride = patch_stride or patch_size
    g = torch.Generator().manual_seed(seed)
    lrs, hrs, sources = [], [], []
    for name in train_names:
        lr, hr = bicubic_downscale(load_photo(name), scale)
        pl, ph = grid_patches(lr, hr, patch_size, stride, scale)
        if pl.shape[0] > max_patches_per_image:  # large photographs would otherwise dominate
            keep = torch.randperm(pl.shape[0], generator=g)[:max_patches_per_image].sort().values
            pl, ph = pl[keep], ph[keep]
        lrs.append(pl)
        hrs.append(ph)
        sources += [name] * pl.shape[0]
    train = SRSplit(torch.cat(lrs), torch.cat(hrs), sources, augment=True)
    vl, vh, vs = [], [], []
    for name in val_images:
        lr, hr = bicubic_downscale(load_photo(name), scale)
        if eval_patch is None:
            vl.append(lr)
            vh.append(hr)
            vs.append(name)
        else:
            pl, ph = grid_patches(lr, hr, eval_patch, eval_patch, scale)
            vl += list(pl)
            vh += list(ph)
            vs += [name] * pl.shape[0]
    if eval_patch is not None:
        if not vl:
            raise DataError(f"eval_patch {eval_patch} is larger than every held-out image")
        test = SRSplit(torch.stack(vl), torch.stack(vh), vs)
    else:
        test = SRSplit(vl, vh, vs)
    return Splits(dataset_info("skimage-photos").sized(input_size=(3, patch_size, patch_size)), train, test)


# --- DIV2K -----------------------------------------------------------------------------------------
def _read_rgb(path: Path) -> torch.Tensor:
    import numpy as np
    import skimage.io

    try:
        image = skimage.io.imread(path)
    except (ValueError, OSError, SyntaxError) as err:  # PIL says "broken PNG file" with a SyntaxError
        raise DataError(f"cannot read image {str(path)!r}: {first_line(err)}") from None
    return to_rgb(torch.from_numpy(np.ascontiguousarray(to_8bit(image, path))))


class DIV2KPatches(torch.utils.data.Dataset):
    """Random LR patches (and their HR patches) of DIV2K training images, ``patches_per_image`` per
    image and epoch, randomly flipped and transposed."""

    whole_images = False

    def __init__(self, pairs: list[tuple[Path, Path]], scale: int, patch: int, patches_per_image: int):
        self.pairs, self.scale, self.patch, self.repeat = pairs, scale, patch, patches_per_image

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr_path, hr_path = self.pairs[i % len(self.pairs)]
        lr, hr = _read_rgb(lr_path), _read_rgb(hr_path)
        p, s = self.patch, self.scale
        y = int(torch.randint(0, lr.shape[-2] - p + 1, ()))
        x = int(torch.randint(0, lr.shape[-1] - p + 1, ()))
        lr = lr[:, y : y + p, x : x + p].unsqueeze(0)
        hr = hr[:, y * s : (y + p) * s, x * s : (x + p) * s].unsqueeze(0)
        lr, hr = _dihedral(lr, hr, torch.default_generator)
        return lr[0].float() / 255, hr[0].float() / 255


class DIV2KImages(torch.utils.data.Dataset):
    """Whole DIV2K validation images, the HR image cropped to ``scale`` times the LR size."""

    whole_images = True

    def __init__(self, pairs: list[tuple[Path, Path]], scale: int):
        self.pairs, self.scale = pairs, scale

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr_path, hr_path = self.pairs[i]
        lr, hr = _read_rgb(lr_path), _read_rgb(hr_path)
        h, w = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        return lr.float() / 255, hr[:, :h, :w].float() / 255


def load_div2k(
    root: str | os.PathLike | None, *, scale: int = 2, patch_size: int = 48, patches_per_image: int = 16
) -> Splits:
    train = DIV2KPatches(div2k_files(root, "train", scale), scale, patch_size, patches_per_image)
    valid = DIV2KImages(div2k_files(root, "valid", scale), scale)
    return Splits(dataset_info("div2k").sized(input_size=(3, patch_size, patch_size)), train, valid)


def load_photos(root, options, seed: int = 0) -> Splits:
    """``skimage-photos`` per the data section's ``sr`` settings (registry loader)."""
    sr = options.sr
    return make_photo_splits(
        scale=sr.scale,
        patch_size=sr.patch_size,
        patch_stride=sr.patch_stride,
        max_patches_per_image=sr.max_patches_per_image,
        val_images=sr.val_images,
        eval_patch=sr.eval_patch,
        seed=seed,
    )


def load_div2k_splits(root, options, seed: int = 0) -> Splits:
    """``div2k`` per the data section's ``sr`` settings (registry loader)."""
    sr = options.sr
    return load_div2k(root, scale=sr.scale, patch_size=sr.patch_size, patches_per_image=sr.patches_per_image)
