import torch

from paradis import create_model, format_profiles, profile
from paradis.cli import main
from paradis.costs import count_macs


def test_per_device_counts_add_up_to_the_fused_forward():
    model = create_model("resnet_small", num_classes=10, in_chans=3).train()
    x = torch.zeros(1, 3, 32, 32)
    for switch in ["[1.0]", "[0.5, 0.25, 0.25]", "[8x0.125]"]:
        p = profile(model, switch, (3, 32, 32))
        fused = count_macs(lambda s=switch: model(x, s, bn_update="none"))
        assert p.macs == sum(p.device_macs) == fused
        assert p.params == sum(p.device_params) + p.fusion_params
        assert p.max_device_macs == max(p.device_macs)
    assert model.bn_switches() == []  # profiling creates no statistics


def test_cost_scales_with_width_squared_per_device():
    model = create_model("resnet50", num_classes=1000)
    full = profile(model, "[1.0]", (3, 224, 224))
    quarter = profile(model, "[4x0.25]", (3, 224, 224))
    half = profile(model, "[0.5, 0.5]", (3, 224, 224))
    assert 1 / 16 < quarter.max_device_macs / full.macs < 1.1 / 16
    assert 1 / 4 < half.max_device_macs / full.macs < 1.1 / 4
    assert len(set(quarter.device_macs)) == 1
    table = format_profiles([full, half, quarter])
    assert "| [0.5, 0.5] | 2 | 2104.62 | 1052.31 |" in table


def test_cli_prints_the_table_and_rejects_bad_switches(capsys):
    assert main(["profile", "mobilenet_v1_small", "--switches", "[1.0]", "[4x0.25]"]) == 0
    out = capsys.readouterr().out
    assert "| [1.0] | 1 | 3.83 |" in out and "| [4x0.25] | 4 |" in out
    assert main(["profile", "mobilenet_v1_small", "--switches", "[0.9, 0.9]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "switch [0.9, 0.9] spans width 1.8" in err[0]


def test_the_package_exports_the_function_whatever_was_imported_first():
    import paradis
    import paradis.costs

    assert callable(paradis.profile) and paradis.profile.__name__ == "profile"
