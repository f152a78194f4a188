"""Super-resolution measures: PSNR on the Y channel with a border crop, and the bicubic baseline.

PSNR follows the usual SR benchmark protocol (EDSR, WDSR): images in ``[0, 1]`` are clamped and
quantized to 8 bits, converted to the Y channel of ITU-R BT.601 YCbCr (MATLAB's ``rgb2ycbcr``, Y in
``[16, 235]``), ``border`` pixels (the scale) are cropped on every side, and
``PSNR = 10 log10(255^2 / MSE)`` is computed per image and averaged over images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # rgb2ycbcr, for RGB in [0, 1]; Y = 16 + w . rgb


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """Y channel (0..255 scale) of ``N x 3 x H x W`` RGB images in ``[0, 1]``; one channel passes through."""
    if images.shape[1] == 1:
        return images[:, 0] * 255.0
    if images.shape[1] != 3:
        raise ValueError(f"expected RGB or grey images, got {images.shape[1]} channels")
    w = torch.tensor(_Y_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return 16.0 + (images * w).sum(1)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Clamp to ``[0, 1]`` and round to 8-bit levels, as a saved image would be."""
    return images.clamp(0, 1).mul(255).round().div(255)


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, border: int) -> torch.Tensor:
    """Per-image PSNR (dB, shape ``N``) of ``sr`` against ``hr`` on Y, ``border`` pixels cropped.

    Identical images give ``inf``."""
    if sr.shape != hr.shape:
        raise ValueError(f"super-resolved images {tuple(sr.shape)} and targets {tuple(hr.shape)} differ in shape")
    if border < 0 or 2 * border >= min(sr.shape[-2:]):
        raise ValueError(f"border {border} leaves nothing of {tuple(sr.shape[-2:])} images")
    a = rgb_to_y(quantize(sr.double()))
    b = rgb_to_y(quantize(hr.double()))
    if border:
        a, b = a[:, border:-border, border:-border], b[:, border:-border, border:-border]
    mse = (a - b).pow(2).mean((1, 2))
    return (10 * torch.log10(255.0**2 / mse)).float()


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by ``scale`` (the baseline every SR table is compared with)."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def mean_psnr(upscale: Callable[[torch.Tensor, int], torch.Tensor], loader: Iterable, *, device=None) -> float:
    """Mean per-image PSNR of ``upscale(lr, scale)`` against ``hr`` over a loader of ``(lr, hr)``
    batches; the scale (and border crop) is read from the shapes."""
    total, count = 0.0, 0
    for lr, hr in loader:
        if device is not None:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        scale = hr.shape[-1] // lr.shape[-1]
        values = psnr_y(upscale(lr, scale), hr, border=scale)
        total += float(values.sum())
        count += values.numel()
    if count == 0:
        raise ValueError("the evaluation loader gave no images")
    return total / count


def bicubic_psnr(loader: Iterable, *, device=None) -> float:
    """The bicubic baseline's mean PSNR over the images of ``loader``."""
    return mean_psnr(bicubic_upscale, loader, device=device)
