import pytest
import torch

from paradis import BNStatisticsMissing, parse_switch
from paradis.layers import SwitchableBatchNorm2d, SwitchContext


def test_statistics_are_private_per_switch_and_affine_is_shared():
    bn = SwitchableBatchNorm2d(8, max_width=1.25)
    full, half = parse_switch("[1.0]"), parse_switch("[0.5, 0.5]")
    bn.train()
    bn(torch.randn(4, 8, 3, 3) * 3 + 5, SwitchContext(full))
    assert bn.has_stats(full) and not bn.has_stats(half)  # same channels, but its own statistics
    mean_full = bn.stats(full)[0].clone()
    bn(torch.randn(4, 4, 3, 3), SwitchContext(parse_switch("[0.5]")))
    torch.testing.assert_close(bn.stats(full)[0], mean_full)
    assert bn.stats(parse_switch("[0.5]"))[0].shape == (4,)
    wide = parse_switch("1.25")
    bn(torch.randn(2, 10, 3, 3), SwitchContext(wide))
    assert bn.stats(wide)[0].shape == (10,)
    assert bn.weight.shape == (10,)


def test_eval_without_statistics_says_so():
    bn = SwitchableBatchNorm2d(8).eval()
    with pytest.raises(BNStatisticsMissing, match=r"switch \[0.5, 0.5\] has no BN statistics"):
        bn(torch.randn(2, 8, 2, 2), SwitchContext(parse_switch("[0.5, 0.5]")))


def test_bn_update_none_leaves_statistics_alone():
    bn = SwitchableBatchNorm2d(8).train()
    s = parse_switch("[1.0]")
    bn(torch.randn(4, 8, 2, 2), SwitchContext(s, "none"))
    assert not bn.has_stats(s)


def test_state_dict_round_trip_creates_the_statistics_buffers():
    bn = SwitchableBatchNorm2d(8).train()
    s = parse_switch("[4x0.25]")
    bn(torch.randn(4, 8, 2, 2) + 2, SwitchContext(s))
    fresh = SwitchableBatchNorm2d(8)
    fresh.load_state_dict(bn.state_dict())
    for a, b in zip(fresh.stats(s), bn.stats(s)):
        torch.testing.assert_close(a, b)
    x = torch.randn(2, 8, 2, 2)
    torch.testing.assert_close(fresh.eval()(x, SwitchContext(s)), bn.eval()(x, SwitchContext(s)))
