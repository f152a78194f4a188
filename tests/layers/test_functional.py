import pytest
import torch
import torch.nn.functional as F

from paradis import parse_switch
from paradis.costs import count_macs
from paradis.layers import depthwise_conv2d, range_conv2d, range_linear


def block_diagonal_mask(in_ranges, out_ranges, shape):
    mask = torch.zeros(shape)
    for (i0, i1), (o0, o1) in zip(in_ranges, out_ranges):
        mask[o0:o1, i0:i1] = 1
    return mask


@pytest.mark.parametrize("switch", ["[1.0]", "[0.5, 0.5]", "[0.5, 0.25, 0.25]", "[8x0.125]", "[1.2]"])
def test_range_conv_equals_block_diagonal_dense_conv(switch):
    s = parse_switch(switch)
    cin, cout = 16, 24
    weight = torch.randn(round(1.2 * cout), round(1.2 * cin), 3, 3)
    bias = torch.randn(weight.shape[0])
    ins, outs = s.channel_ranges(cin), s.channel_ranges(cout)
    x = torch.randn(2, ins[-1][1], 9, 9)
    got = range_conv2d(x, weight, bias, ins, outs, stride=2, padding=1)
    n_out, n_in = outs[-1][1], ins[-1][1]
    w = weight[:n_out, :n_in] * block_diagonal_mask(ins, outs, (n_out, n_in, 1, 1))
    want = F.conv2d(x, w, bias[:n_out], stride=2, padding=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_range_conv_cost_scales_with_width_squared():
    cin = cout = 64
    weight = torch.randn(cout, cin, 3, 3)
    full = parse_switch("[1.0]")
    x = torch.randn(1, cin, 16, 16)
    base = count_macs(range_conv2d, x, weight, None, full.channel_ranges(cin), full.channel_ranges(cout), 1, 1)
    for text, share in [
        ("[0.25]", 1 / 16),
        ("[4x0.25]", 4 / 16),
        ("[0.5, 0.5]", 2 / 4),
        ("[8x0.125]", 8 / 64),
    ]:
        s = parse_switch(text)
        xs = x[:, : s.channels(cin)]
        macs = count_macs(range_conv2d, xs, weight, None, s.channel_ranges(cin), s.channel_ranges(cout), 1, 1)
        assert macs == base * share, text


def test_first_layer_reads_every_input_channel():
    s = parse_switch("[0.5, 0.25, 0.25]")
    weight = torch.randn(16, 3, 3, 3)
    x = torch.randn(2, 3, 8, 8)
    got = range_conv2d(x, weight, None, None, s.channel_ranges(16), padding=1)
    torch.testing.assert_close(got, F.conv2d(x, weight, padding=1))
    # changing one image channel changes every sub-network's output
    x2 = x.clone()
    x2[:, 2] += 1
    diff = (range_conv2d(x2, weight, None, None, s.channel_ranges(16), padding=1) - got).abs()
    for o0, o1 in s.channel_ranges(16):
        assert diff[:, o0:o1].sum() > 0


def test_depthwise_is_per_channel():
    weight = torch.randn(10, 1, 3, 3)
    x = torch.randn(2, 6, 5, 5)
    got = depthwise_conv2d(x, weight, None, 1, 1)
    for c in range(6):
        torch.testing.assert_close(got[:, c : c + 1], F.conv2d(x[:, c : c + 1], weight[c : c + 1], padding=1))


def test_classifier_sums_partial_outputs_and_adds_bias_once():
    s = parse_switch("[0.5, 0.25, 0.25]")
    weight, bias = torch.randn(7, 40), torch.randn(7)
    ranges = s.channel_ranges(32)
    x = torch.randn(3, ranges[-1][1])
    fused = range_linear(x, weight, bias, ranges, None)
    partials = [x[:, a:b] @ weight[:, a:b].T for a, b in ranges]
    torch.testing.assert_close(fused, sum(partials) + bias)


def test_block_diagonal_linear():
    s = parse_switch("[0.5, 0.5]")
    weight = torch.randn(12, 12)
    ins, outs = s.channel_ranges(10), s.channel_ranges(10)
    x = torch.randn(4, 10)
    got = range_linear(x, weight, None, ins, outs)
    want = x @ (weight[:10, :10] * block_diagonal_mask(ins, outs, (10, 10))).T
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("switch", ["[0.5, 0.5]", "[4x0.25]", "[8x0.125]", "[0.5, 0.25, 0.25]", "[3x0.4]"])
def test_grouped_convolution_equals_the_loop(switch):
    s = parse_switch(switch)
    cin, cout = 32, 48
    weight = torch.randn(round(1.2 * cout), round(1.2 * cin), 3, 3, requires_grad=True)
    bias = torch.randn(weight.shape[0], requires_grad=True)
    ins, outs = s.channel_ranges(cin), s.channel_ranges(cout)
    x = torch.randn(3, ins[-1][1] + 5, 8, 8, requires_grad=True)  # extra channels beyond the switch are ignored
    grads = []
    for grouped in (True, False):
        out = range_conv2d(x, weight, bias, ins, outs, stride=2, padding=1, grouped=grouped)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), x.grad.clone(), weight.grad.clone(), bias.grad.clone()))
        x.grad = weight.grad = bias.grad = None
    for fast, ref in zip(*grads):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("switch", ["[0.5, 0.5]", "[4x0.25]", "[0.5, 0.25, 0.25]"])
def test_grouped_block_linear_equals_the_loop(switch):
    s = parse_switch(switch)
    weight, bias = torch.randn(24, 40), torch.randn(24)
    ins, outs = s.channel_ranges(40), s.channel_ranges(24)
    x = torch.randn(5, 40)
    torch.testing.assert_close(
        range_linear(x, weight, bias, ins, outs, grouped=True), range_linear(x, weight, bias, ins, outs, grouped=False)
    )


def test_equal_blocks_decides_the_path():
    from paradis.layers.functional import equal_blocks

    def blocks(text, cin=16, cout=32):
        s = parse_switch(text)
        return equal_blocks(s.channel_ranges(cin), s.channel_ranges(cout))

    assert blocks("[4x0.25]") and blocks("[0.5, 0.5]") and blocks("[8x0.125]")
    assert not blocks("[1.0]")  # one sub-network: a plain convolution already
    assert not blocks("[0.5, 0.25, 0.25]")
    # equal widths whose rounding gives unequal slices (32 channels -> 10, 9, 10) take the loop
    assert not blocks("[3x0.3]", cin=10, cout=32)
    assert blocks("[3x0.3]", cin=10, cout=10)
