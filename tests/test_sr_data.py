"""Super-resolution data and measures: PSNR numbers, bicubic pairs, the split by image, DIV2K layout."""

import math

import pytest
import torch
import torch.nn.functional as F

from paradis.data import DataError, check_dataset, make_loader
from paradis.data.sr import (
    SKIMAGE_PHOTOS,
    SRLoader,
    SRSplit,
    bicubic_downscale,
    grid_patches,
    load_div2k,
    load_photo,
    make_photo_splits,
)
from paradis.tasks.psnr import bicubic_psnr, bicubic_upscale, psnr_y, rgb_to_y


def test_y_channel_is_matlabs_rgb2ycbcr():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).view(3, 3, 1, 1)
    y = rgb_to_y(rgb).flatten()
    torch.testing.assert_close(y, torch.tensor([235.0, 16.0, 16 + 65.481]))


def test_psnr_known_values_and_border_crop():
    hr = torch.full((2, 3, 10, 10), 100 / 255)
    sr = hr + 1 / 255  # one grey level everywhere: Y differs by 219/255 levels
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)  # 49.4527 dB
    torch.testing.assert_close(psnr_y(sr, hr, border=2), torch.full((2,), expected))
    assert round(expected, 4) == 49.4527
    # differences confined to the border are cropped away; one inside pixel of 10 levels in the 6x6 crop
    sr = hr.clone()
    sr[:, :, :2] = 0.0
    assert torch.isinf(psnr_y(sr, hr, border=2)).all()
    sr[0, :, 5, 5] += 10 / 255
    mse = (10 * 219 / 255) ** 2 / 36
    assert psnr_y(sr, hr, border=2)[0].item() == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-4)
    with pytest.raises(ValueError, match="border 5 leaves nothing"):
        psnr_y(sr, hr, border=5)


def test_psnr_quantizes_and_clamps_like_saved_images():
    hr = torch.full((1, 3, 8, 8), 0.5)
    assert torch.isinf(psnr_y(hr + 0.1 / 255, hr, border=1))  # below half a level: same 8-bit image
    assert torch.isinf(psnr_y(torch.full_like(hr, 1.7), torch.ones_like(hr), border=1))


def test_bicubic_pairs_and_baseline():
    hr = load_photo("astronaut")
    assert hr.shape == (3, 512, 512) and hr.dtype == torch.uint8
    lr, hr_c = bicubic_downscale(hr[:, :101, :100], 2)
    assert lr.shape == (3, 50, 50) and hr_c.shape == (3, 100, 100)
    expected = F.interpolate(hr_c[None].float(), size=(50, 50), mode="bicubic", antialias=True)
    assert (lr.float() - expected[0].clamp(0, 255)).abs().max() <= 0.5
    grey = load_photo("camera")
    assert grey.shape == (3, 512, 512) and torch.equal(grey[0], grey[1])
    # the bicubic baseline of a real photograph is well above noise and well below identity
    lr_full, hr_full = bicubic_downscale(hr, 2)
    split = SRSplit([lr_full], [hr_full], ["astronaut"])
    value = bicubic_psnr(SRLoader(split, 4, shuffle=False))
    assert 25 < value < 40
    up = bicubic_upscale(lr[None].float() / 255, 2)
    assert up.shape == (1, 3, 100, 100) and up.min() >= 0 and up.max() <= 1


def test_photo_patches_are_split_by_image():
    splits = make_photo_splits(patch_size=24, max_patches_per_image=20, val_images=["coins", "moon"], eval_patch=32)
    train, test = splits.train, splits.test
    assert set(test.sources) == {"coins", "moon"}
    assert not set(train.sources) & set(test.sources)
    assert set(train.sources) == set(SKIMAGE_PHOTOS) - {"coins", "moon"}
    assert train.lr.shape[1:] == (3, 24, 24) and train.hr.shape[1:] == (3, 48, 48)
    assert train.lr.shape[0] == len(train.sources) <= 20 * (len(SKIMAGE_PHOTOS) - 2)
    assert test.lr.shape[1:] == (3, 32, 32)
    assert splits.info.input_size == (3, 24, 24)
    with pytest.raises(DataError, match="unknown photograph"):
        make_photo_splits(val_images=["lena"])


def test_grid_patches_match_their_high_resolution_patches():
    hr = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    lr, hr = bicubic_downscale(hr, 2)
    pl, ph = grid_patches(lr, hr, 8, 8, 2)
    assert pl.shape == (2 * 3, 3, 8, 8)
    torch.testing.assert_close(pl[4], lr[:, 8:16, 8:16])
    torch.testing.assert_close(ph[4], hr[:, 16:32, 16:32])


def test_loader_augments_pairs_together_and_is_reproducible():
    hr = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    lr = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    split = SRSplit(lr, hr, ["x"] * 16, augment=True)
    loader = SRLoader(split, 8, shuffle=True, seed=3, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    for x, y in batches:
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
        # each pair is one original pair under one and the same flip/transposition
        for xi, yi in zip(x, y):
            assert any(
                torch.equal(xi, t(lr[k]).float() / 255) and torch.equal(yi, t(hr[k]).float() / 255)
                for k in range(16)
                for t in _symmetries()
            )
    again = list(SRLoader(split, 8, shuffle=True, seed=3, drop_last=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    whole = SRSplit([lr[0], lr[1][:, :6]], [hr[0], hr[1][:, :12]], ["a", "b"])
    assert [tuple(x.shape) for x, _ in make_loader(whole, 8, shuffle=False)] == [(1, 3, 8, 8), (1, 3, 6, 8)]


def _symmetries():
    out = []
    for t in (False, True):
        for fh in (False, True):
            for fw in (False, True):

                def f(img, t=t, fh=fh, fw=fw):
                    img = img.transpose(-1, -2) if t else img
                    img = img.flip(-2) if fh else img
                    return img.flip(-1) if fw else img

                out.append(f)
    return out


def test_div2k_layout_is_read_and_missing_parts_are_named(tmp_path):
    import skimage.io

    def write_png(image, path):
        skimage.io.imsave(path, image.permute(1, 2, 0).numpy(), check_contrast=False)

    with pytest.raises(DataError, match="lacks DIV2K_train_HR"):
        load_div2k(tmp_path)
    with pytest.raises(DataError, match="lacks DIV2K_train_HR"):
        check_dataset("div2k", tmp_path)
    for part, names in (("train", ["0001", "0002"]), ("valid", ["0801"])):
        (tmp_path / f"DIV2K_{part}_HR").mkdir()
        (tmp_path / f"DIV2K_{part}_LR_bicubic" / "X2").mkdir(parents=True)
        for n in names:
            hr = torch.randint(0, 256, (3, 41, 50), dtype=torch.uint8)
            lr, _ = bicubic_downscale(hr, 2)
            write_png(hr, str(tmp_path / f"DIV2K_{part}_HR" / f"{n}.png"))
            write_png(lr, str(tmp_path / f"DIV2K_{part}_LR_bicubic" / "X2" / f"{n}x2.png"))
    check_dataset("div2k", tmp_path)
    splits = load_div2k(tmp_path, scale=2, patch_size=8, patches_per_image=3)
    assert len(splits.train) == 6 and len(splits.test) == 1
    x, y = next(iter(make_loader(splits.train, 4, shuffle=True)))
    assert x.shape == (4, 3, 8, 8) and y.shape == (4, 3, 16, 16)
    x, y = next(iter(make_loader(splits.test, 4, shuffle=False)))
    assert x.shape == (1, 3, 20, 25) and y.shape == (1, 3, 40, 50)  # HR cropped to 2x the LR size
    (tmp_path / "DIV2K_valid_LR_bicubic" / "X2" / "0801x2.png").unlink()
    with pytest.raises(DataError, match=r"0801x2\.png' is missing"):
        load_div2k(tmp_path)
