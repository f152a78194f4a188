"""What the model tests share: which weights a sub-network owns, the check that it ignores every other
weight, and BN statistics for trained and never-trained switches."""

import torch

from paradis import calibrate_bn
from paradis.layers import SwitchableBatchNorm2d


def owned_masks(model, switch, index):
    """For every parameter, which entries belong to sub-network ``index`` of ``switch``."""
    masks = {}
    for name, layer in model.range_layers():
        outs = layer.out_ranges(switch)
        ins = layer.in_ranges(switch)
        w = torch.zeros_like(layer.weight, dtype=torch.bool)
        b = None if getattr(layer, "bias", None) is None else torch.zeros_like(layer.bias, dtype=torch.bool)
        if isinstance(layer, SwitchableBatchNorm2d) or getattr(layer, "depthwise", False):
            o0, o1 = outs[index]
            w[o0:o1] = True
            b_range = (o0, o1)
        elif outs is None:  # fusing classifier: its columns, and the shared bias
            i0, i1 = ins[index]
            w[:, i0:i1] = True
            b_range = (0, layer.weight.shape[0])
        else:
            o0, o1 = outs[index]
            i0, i1 = ins[index] if ins is not None else (0, layer.weight.shape[1])
            w[o0:o1, i0:i1] = True
            b_range = (o0, o1)
        masks[f"{name}.weight"] = w
        if b is not None:
            b[b_range[0] : b_range[1]] = True
            masks[f"{name}.bias"] = b
    assert set(masks) == {n for n, _ in model.named_parameters()}
    return masks


def assert_sub_network_ignores_outside_weights(model, s, x) -> None:
    """Each sub-network of switch ``s`` computes the same output whatever the weights it does not own
    (scrambled to 3-sigma noise), and does change with its own (the fused classifier's columns)."""
    for index in range(len(s)):
        masks = owned_masks(model, s, index)
        head_cols = masks["head.weight"]
        with torch.no_grad():
            model.head.weight[~head_cols] = 0  # the fused output is now sub-network `index` alone
        before = model(x, s, bn_update="none")
        with torch.no_grad():
            for pname, p in model.named_parameters():
                p[~masks[pname]] = torch.randn_like(p)[~masks[pname]] * 3
            model.head.weight[~head_cols] = 0
        after = model(x, s, bn_update="none")
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        with torch.no_grad():
            model.head.weight[head_cols] += 1
        assert not torch.allclose(model(x, s, bn_update="none"), before)


def train_some_switches(model, shape, trained, never_trained):
    """Update BN statistics of ``trained`` switches on random batches and calibrate ``never_trained``."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            for s in trained:
                model(torch.randn(8, *shape), s)
    for s in never_trained:
        calibrate_bn(model, s, [torch.randn(8, *shape) for _ in range(2)])
    return model.eval()
