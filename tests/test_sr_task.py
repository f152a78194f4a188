"""The super-resolution task through the one training step, the evaluation, the configuration and
``run_training``."""

import pytest
import torch
import torch.nn.functional as F

from paradis import create_model, parse_switch
from paradis.config import ConfigError, RunConfig, validate
from paradis.data import DatasetInfo, Splits
from paradis.data.sr import SRSplit, bicubic_downscale
from paradis.engine import run_training
from paradis.engine.evaluation import table_markdown
from paradis.methods import StepPlan, SwitchTask
from paradis.methods.step import train_step
from paradis.tasks import get_task

SR = {"task": "super-resolution", "model": {"name": "wdsr_small"}, "data": {"name": "skimage-photos"}}


def _pairs(n: int, size: int, seed: int = 0) -> SRSplit:
    """Smooth random images (upsampled noise), so that super-resolution is learnable."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    hr = (F.interpolate(base, size=(2 * size, 2 * size), mode="bicubic") * 255).clamp(0, 255).round().byte()
    pairs = [bicubic_downscale(h, 2) for h in hr]
    return SRSplit(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), [f"i{k}" for k in range(n)])


def test_super_resolution_step_trains_on_l1_and_decreases_the_loss():
    model = create_model("wdsr_small", wide_factor=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    split = _pairs(8, 12)
    lr, hr = split.lr.float() / 255, split.hr.float() / 255
    plan = StepPlan(tuple(SwitchTask(parse_switch(s), "labels") for s in ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]))
    with torch.no_grad():
        before = float(F.l1_loss(model(lr, "[1.0]"), hr))
    first = train_step(model, optimizer, lr, hr, plan, task_type="super-resolution")
    assert first.losses[parse_switch("[1.0]")] == pytest.approx(before, rel=1e-5)  # L1 to the HR image
    for _ in range(30):
        last = train_step(model, optimizer, lr, hr, plan, task_type="super-resolution")
    assert last.finite and set(last.losses) == set(first.losses)
    for s, v in last.losses.items():
        assert v < 0.5 * first.losses[s], s


def test_super_resolution_distillation_is_l1_to_the_teachers_detached_image():
    obj = get_task("super-resolution").objective()
    out, teacher = torch.rand(2, 3, 4, 4, requires_grad=True), torch.rand(2, 3, 4, 4, requires_grad=True)
    target = obj.teacher_target(teacher)
    assert not target.requires_grad
    torch.testing.assert_close(obj.teacher_loss(out, target), (out - teacher).abs().mean())
    model = create_model("wdsr_small", wide_factor=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    plan = StepPlan(
        (SwitchTask(parse_switch("[1.0]"), "labels"), SwitchTask(parse_switch("[4x0.25]"), "teacher")),
        teacher=parse_switch("[1.0]"),
    )
    x, y = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 12, 12)
    res = train_step(model, optimizer, x, y, plan, task_type="super-resolution")
    with torch.no_grad():
        expected = F.l1_loss(model(x, "[4x0.25]"), model(x, "[1.0]"))
    assert res.losses[parse_switch("[4x0.25]")] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        get_task("segmentation")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"task": "denoising"}, "task: unknown task 'denoising'; known: classification, super-resolution"),
        (
            {**SR, "model": {"name": "resnet_small"}},
            "model.name: 'resnet_small' is for task classification, but task is 'super-resolution' "
            "(for super-resolution: wdsr, wdsr_small)",
        ),
        (
            {**SR, "data": {"name": "fashion-mnist"}},
            "data.name: 'fashion-mnist' is for task classification, but task is 'super-resolution' "
            "(for super-resolution: div2k, skimage-photos)",
        ),
        ({"model": {"name": "wdsr"}}, "model.name: 'wdsr' is for task super-resolution, but task is 'classification'"),
        ({"data": {"name": "div2k"}}, "data.name: 'div2k' is for task super-resolution, but task is 'classification'"),
        ({**SR, "data": {"name": "skimage-photos", "sr": {"scale": 5}}}, "data.sr.scale"),
        ({**SR, "data": {"name": "skimage-photos", "sr": {"val_images": ["lena"]}}}, "data.sr.val_images"),
        ({**SR, "training": {"optimizer": {"name": "rmsprop"}}}, "training.optimizer.name"),
    ],
)
def test_config_rejects_bad_task_settings(data, needle):
    with pytest.raises(ConfigError) as err:
        validate(RunConfig, data, "run.yaml")
    assert needle in str(err.value), str(err.value)


def test_super_resolution_defaults_to_no_distillation():
    cfg = validate(RunConfig, SR, "run.yaml")
    assert cfg.training.distillation == "none" and cfg.task == "super-resolution"
    cfg = validate(RunConfig, {**SR, "training": {"distillation": "ipkd"}}, "run.yaml")
    assert cfg.training.distillation == "ipkd"
    assert validate(RunConfig, {}, "run.yaml").training.distillation == "wide"  # classification unchanged


def test_super_resolution_allocates_no_wide_channels_unless_distilling_from_a_wide_model():
    assert validate(RunConfig, SR, "run.yaml").training.wide_factor == 1.0
    wide = validate(RunConfig, {**SR, "training": {"distillation": "wide"}}, "run.yaml")
    assert wide.training.wide_factor == 1.2
    given = validate(RunConfig, {**SR, "training": {"wide_factor": 1.5}}, "run.yaml")
    assert given.training.wide_factor == 1.5
    assert validate(RunConfig, {}, "run.yaml").training.wide_factor == 1.2


def test_run_training_reports_psnr_per_switch_and_the_bicubic_baseline():
    splits = Splits(
        DatasetInfo("skimage-photos", None, (3, 12, 12), task="super-resolution"), _pairs(32, 12), _pairs(4, 16, seed=1)
    )
    cfg = validate(
        RunConfig,
        {
            **SR,
            "training": {
                "wide_factor": 1.0,
                "epochs": 2,
                "batch_size": 8,
                "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0},
                "schedule": {"kind": "constant"},
            },
            "evaluation": {"switches": ["[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]"], "every": 1},
        },
        "run.yaml",
    )
    result = run_training(cfg, splits=splits)
    metrics = result.history[-1]
    for slug in ("1.0", "0.5-0.5", "0.5-0.25-0.25", "4x0.25", "target", "bicubic"):
        assert f"psnr/{slug}" in metrics
    assert not any(k.startswith("acc/") for k in metrics)
    rows = {r.switch: r for r in result.table}
    assert rows["[0.5, 0.25, 0.25]"].trained is False and rows["[1.0]"].trained is True
    assert all(r.top1 is None and r.baseline_psnr == metrics["psnr/bicubic"] for r in rows.values())
    assert metrics["psnr/1.0"] == rows["[1.0]"].psnr > 10
    assert rows["[4x0.25]"].max_device_macs < rows["[1.0]"].macs / 3
    text = table_markdown(result.table)
    assert "PSNR (dB)" in text and f"Bicubic upsampling on the same images: {metrics['psnr/bicubic']:.2f} dB" in text
