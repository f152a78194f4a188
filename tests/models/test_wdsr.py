"""WDSR as a ParaDiS network: [1.0] is an ordinary weight-normalized WDSR, sub-networks are independent
(including their weight norms), extraction reproduces the fused model, costs count the skip once."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from paradis import create_model, parse_switch, profile
from paradis.layers import SwitchContext, WNRangeConv2d
from paradis.methods import StepPlan, SwitchTask
from paradis.methods.step import train_step
from paradis.models.wdsr import WDSR

SWITCHES = ["[1.2]", "[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[4x0.25]", "[8x0.125]"]


class ReferenceWDSR(nn.Module):
    """WDSR written the ordinary way (ychfan/wdsr, April 2020) with torch's weight norm."""

    def __init__(self, channels: int, blocks: int, expansion: int, scale: int):
        super().__init__()
        out_maps = 3 * scale * scale
        self.scale = scale
        self.entry = weight_norm(nn.Conv2d(3, channels, 3, padding=1))
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                [
                    weight_norm(nn.Conv2d(channels, channels * expansion, 3, padding=1)),
                    weight_norm(nn.Conv2d(channels * expansion, channels, 3, padding=1)),
                ]
            )
            for _ in range(blocks)
        )
        self.exit = weight_norm(nn.Conv2d(channels, out_maps, 3, padding=1))
        self.skip = weight_norm(nn.Conv2d(3, out_maps, 5, padding=2))

    def forward(self, x):
        x = x - 0.5
        y = self.entry(x)
        for c1, c2 in self.blocks:
            y = y + c2(F.relu(c1(y)))
        return F.pixel_shuffle(self.exit(y) + self.skip(x), self.scale) + 0.5


def _copy_into_reference(ours: WDSR, ref: ReferenceWDSR) -> None:
    pairs = [(ours.entry, ref.entry)]
    pairs += [(b.conv1, r[0]) for b, r in zip(ours.blocks, ref.blocks)]
    pairs += [(b.conv2, r[1]) for b, r in zip(ours.blocks, ref.blocks)]
    pairs += [(ours.head, ref.exit), (ours.skip.conv, ref.skip)]
    with torch.no_grad():
        for o, r in pairs:
            g, v = r.parametrizations.weight.original0, r.parametrizations.weight.original1
            g.copy_(o.weight_g[: g.shape[0]].view_as(g))
            v.copy_(o.weight_v[: v.shape[0], : v.shape[1]])
            r.bias.copy_(o.bias[: r.bias.shape[0]])


def _randomize(model: nn.Module) -> None:
    """Gains and biases away from their initial values, so that every parameter matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.1)


def test_registered_models_have_the_papers_sizes():
    model = create_model("wdsr", wide_factor=1.0)
    assert model.feature_base == 64 and len(model.blocks) == 8
    assert model.blocks[0].conv1.weight_v.shape[:2] == (256, 64)  # expansion 4
    assert model(torch.rand(1, 3, 10, 12)).shape == (1, 3, 20, 24)
    assert create_model("wdsr_small", scale=3)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 24, 24)
    with pytest.raises(ValueError, match=r"image-to-image .* takes no num_classes"):
        create_model("wdsr", num_classes=10)
    assert not list(model.bn_layers())  # weight normalization, no BN


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_initialisation_is_bicubic_upsampling_inside_the_border(scale):
    model = create_model("wdsr_small", scale=scale)  # init="bicubic" by default
    with torch.no_grad():
        model.head.weight_g.zero_()  # silence the body: the skip branch alone
    x = torch.rand(2, 3, 12, 11)
    inner = (slice(None), slice(None), slice(2 * scale, -2 * scale), slice(2 * scale, -2 * scale))
    bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    for s in ["[1.0]", "[4x0.25]"]:
        torch.testing.assert_close(model(x, s)[inner], bicubic[inner], rtol=1e-5, atol=1e-5)
    ychfan = create_model("wdsr")
    assert torch.equal(ychfan.head.weight_g, torch.ones(12)) and not torch.equal(
        ychfan.skip.conv.weight_g, model.skip.conv.weight_g
    )


def test_full_switch_is_an_ordinary_weight_normalized_wdsr():
    ours = create_model("wdsr", wide_factor=1.2)  # the [1.0] slices sit inside wider tensors
    _randomize(ours)
    ref = ReferenceWDSR(64, 8, 4, 2)
    _copy_into_reference(ours, ref)
    x = torch.rand(2, 3, 12, 10)
    torch.testing.assert_close(ours(x, "[1.0]"), ref(x), rtol=1e-5, atol=1e-5)
    # and the [1.0] weight norm ignores the channels beyond [1.0] (present because of the wide factor)
    with torch.no_grad():
        for m in ours.modules():
            if isinstance(m, WNRangeConv2d) and m.in_base is not None:
                m.weight_v[:, 64 * (4 if m.in_base == 256 else 1) :] += 5.0
    torch.testing.assert_close(ours(x, "[1.0]"), ref(x), rtol=1e-5, atol=1e-5)


def test_weight_norm_is_taken_over_each_sub_networks_own_slice():
    layer = WNRangeConv2d(8, 8, 3, max_width=1.0)
    with torch.no_grad():
        layer.weight_g.uniform_(0.5, 2.0)
    s = parse_switch("[0.5, 0.25, 0.25]")
    w = layer.normalized_weight(s)
    for (i0, i1), (o0, o1) in zip(s.channel_ranges(8), s.channel_ranges(8)):
        block = w[o0:o1, i0:i1]
        norms = block.flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, layer.weight_g[o0:o1].detach())
        plain = layer.plain(s, [r[0] for r in s.channel_ranges(8)].index(i0))
        torch.testing.assert_close(plain.weight, block.detach())
        expected = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(i1 - i0, o1 - o0, 3, padding=1))
        with torch.no_grad():
            expected.parametrizations.weight.original0.copy_(layer.weight_g[o0:o1].view(-1, 1, 1, 1))
            expected.parametrizations.weight.original1.copy_(layer.weight_v[o0:o1, i0:i1])
        torch.testing.assert_close(plain.weight, expected.weight.detach())
    # the fusing layer: every sub-network's column block has its own per-output norm, the shared gain
    fusing = WNRangeConv2d(8, None, 3, out_channels=12)
    wf = fusing.normalized_weight(s)
    for i0, i1 in s.channel_ranges(8):
        torch.testing.assert_close(wf[:, i0:i1].flatten(1).norm(dim=1), fusing.weight_g.detach())


def _owned_by(layer: WNRangeConv2d, switch, index: int) -> list[tuple[torch.Tensor, tuple]]:
    """Index expressions of the parameters sub-network ``index`` reads in ``layer``."""
    ins, outs = layer._ranges(switch)
    (i0, i1), (o0, o1) = ins[index], outs[index]
    return [(layer.weight_v, (slice(o0, o1), slice(i0, i1))), (layer.weight_g, (slice(o0, o1),))] + (
        [] if layer.bias is None else [(layer.bias, (slice(o0, o1),))]
    )


@pytest.mark.parametrize("index", [0, 1])
def test_sub_networks_are_independent(index):
    """Redrawing every weight outside one sub-network's slices (norms included) leaves its partial
    output unchanged; the fused output changes."""
    model = create_model("wdsr_small", wide_factor=1.0).eval()
    _randomize(model)
    s = parse_switch("[0.5, 0.25, 0.25]")
    x = torch.rand(2, 3, 9, 11)
    before = model.extract(s).subnets[index](x)
    fused_before = model(x, s)
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, WNRangeConv2d):
                continue
            keep = [(p, idx, p[idx].clone()) for p, idx in _owned_by(m, s, index)]
            if m.in_base is None and m.out_base is None and index == 0:
                continue  # the skip branch belongs to sub-network 0
            for p in m.parameters():
                p.uniform_(0.2, 1.0) if p is m.weight_g else p.normal_()
            for p, idx, value in keep:
                p[idx] = value
    after = model.extract(s).subnets[index](x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert (model(x, s) - fused_before).abs().max() > 1e-3


def test_extraction_reproduces_the_fused_model_trained_and_untrained_switches():
    model = create_model("wdsr_small", wide_factor=1.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    plan = StepPlan(tuple(SwitchTask(parse_switch(s), "labels") for s in ["[1.0]", "[0.5, 0.5]", "[4x0.25]"]))
    lr, hr = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 16, 16)
    for _ in range(3):
        train_step(model, optimizer, lr, hr, plan, task_type="super-resolution")
    model.eval()
    x = torch.rand(2, 3, 13, 10)
    for s in SWITCHES:  # [1.2], [0.5, 0.25, 0.25] and [8x0.125] never trained
        parts = model.extract(s)
        assert len(parts.subnets) == len(parse_switch(s))
        torch.testing.assert_close(parts(x), model(x, s), rtol=1e-5, atol=1e-5)
        # the skip branch runs once: on the first device only
        assert parts.subnets[0].body.skip.conv is not None
        assert all(net.body.skip.conv is None for net in parts.subnets[1:])


def test_costs_count_the_skip_branch_once_and_split_the_body():
    model = create_model("wdsr_small", wide_factor=1.0)
    size = (3, 16, 16)
    full, quarter = profile(model, "[1.0]", size), profile(model, "[4x0.25]", size)
    skip_macs = 16 * 16 * 12 * 3 * 25
    skip_params = 12 * 3 * 25 + 12
    assert quarter.device_macs[0] - quarter.device_macs[1] == skip_macs
    assert quarter.device_params[0] - quarter.device_params[1] == skip_params + 12  # + the exit bias
    assert quarter.macs == sum(quarter.device_macs) and quarter.macs < full.macs / 3
    c, e, b = 32, 128, 4  # channels, expansion width, blocks of wdsr_small
    body = 16 * 16 * 9 * (3 * c + b * 2 * c * e + c * 12)
    assert full.macs == body + skip_macs
    biases = c + b * (e + c) + 12
    assert full.params == 9 * (3 * c + b * 2 * c * e + c * 12) + biases + skip_params  # gains folded in


def test_wn_layer_takes_the_switch_context_like_the_other_range_layers():
    layer = WNRangeConv2d(None, 8, 3, in_channels=3)
    x = torch.randn(1, 3, 5, 5)
    out = layer(x, SwitchContext(parse_switch("[0.5, 0.5]")))
    assert out.shape == (1, 8, 5, 5)
    w = layer.normalized_weight(parse_switch("[1.0]"))
    torch.testing.assert_close(out, F.conv2d(x, w, layer.bias, padding=1))
    assert math.isclose(float(w[0].detach().norm()), 1.0, rel_tol=1e-6)
