import math
from fractions import Fraction
from itertools import pairwise

import pytest

from paradis import Switch, create_model, parse_switch
from paradis.switch import channel_index


@pytest.mark.parametrize(
    ("text", "widths", "canonical"),
    [
        ("1.2", (1.2,), "[1.2]"),
        ("[1.0]", (1.0,), "[1.0]"),
        ("[0.5, 0.5]", (0.5, 0.5), "[0.5, 0.5]"),
        ("[0.5, 0.25, 0.25]", (0.5, 0.25, 0.25), "[0.5, 0.25, 0.25]"),
        ("4x0.25", (0.25,) * 4, "[4x0.25]"),
        ("[4x0.25]", (0.25,) * 4, "[4x0.25]"),
        ("[0.5, 2x0.25]", (0.5, 0.25, 0.25), "[0.5, 0.25, 0.25]"),
        ("[8x0.125]", (0.125,) * 8, "[8x0.125]"),
        ("[0.5; 0.5]x", (0.5, 0.5), "[0.5, 0.5]"),
        ("[0.25, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125]", (0.25,) + (0.125,) * 6, "[0.25, 6x0.125]"),
        ("[3x0.25]", (0.25,) * 3, "[3x0.25]"),
        (" [ 0.5 ,0.5 ] ", (0.5, 0.5), "[0.5, 0.5]"),
    ],
)
def test_parse_and_canonical_form_round_trip(text, widths, canonical):
    s = parse_switch(text)
    assert s.widths == widths
    assert str(s) == canonical
    assert parse_switch(str(s)) == s
    assert Switch.from_key(s.key) == s
    assert parse_switch("[" + s.slug.replace("-", ", ") + "]") == s


def test_other_inputs_and_value_semantics():
    assert parse_switch(1.0) == Switch([1.0]) == parse_switch([1.0]) == parse_switch("1")
    assert parse_switch(["0.5", "2x0.25"]) == parse_switch("[0.5, 0.25, 0.25]")
    assert hash(parse_switch("[0.5, 0.5]")) == hash(Switch((0.5, 0.5)))
    assert parse_switch("[0.5, 0.5]") != parse_switch("[1.0]")
    assert parse_switch("[0.5, 0.5]").slug == "0.5-0.5"
    assert parse_switch("[0.1, 0.2]").total_exact == Fraction(3, 10)  # exact decimals, no float drift
    with pytest.raises(AttributeError):
        parse_switch("[1.0]").foo = 1


def test_boundaries_line_up_across_switches():
    for base in (8, 16, 24, 32, 40, 64, 77, 100, 1024):
        a = parse_switch("[0.5, 0.5]").channel_ranges(base)
        b = parse_switch("[0.5, 0.25, 0.25]").channel_ranges(base)
        c = parse_switch("[4x0.25]").channel_ranges(base)
        assert a[0][1] == b[0][1] == c[1][1]
        assert b[1][1] == c[2][1]
        assert a[-1][1] == b[-1][1] == c[-1][1] == base
        # contiguous, non-overlapping
        for ranges in (a, b, c):
            assert all(r0[1] == r1[0] for r0, r1 in pairwise(ranges))


def test_rounding_rule_is_half_up_on_cumulative_offsets():
    assert channel_index(Fraction(1, 2), 5) == 3  # 2.5 rounds up
    assert channel_index(Fraction(6, 5), 64) == 77  # 76.8
    assert parse_switch("[0.3, 0.3, 0.4]").channel_ranges(10) == ((0, 3), (3, 6), (6, 10))
    # Offsets, not widths, are rounded: 3 x 1/3 of 10 channels is 3, 4, 3 channels, 10 in all.
    s = Switch([1 / 3, 1 / 3, 1 / 3])
    assert s.channels(10) <= 10
    assert parse_switch("[0.125]").channel_ranges(8) == ((0, 1),)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[0, 0.5]", "must be positive"),
        ("[-0.5]", "must be positive"),
        ("[abc]", "'abc' is not a number"),
        ("[]", "is empty"),
        ("", "is empty"),
        ("[0.5, 0.5", "unbalanced"),
        ("[0.5,, 0.5]", "cannot read"),
        ("[0x0.5]", "repeat count 0"),
        ("[nan]", "not a number"),
    ],
)
def test_bad_text_is_rejected_with_the_switch_named(text, needle):
    with pytest.raises(ValueError) as err:
        parse_switch(text)
    assert needle in str(err.value)
    assert "switch" in str(err.value)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ([0.5, -0.25], "must be positive"),
        ([float("nan")], "not a finite number"),
        ([math.inf], "not a finite number"),
        ([True], "not a number"),
        (["x"], "not a number"),
        ([], "empty"),
        (None, "not a number or a list"),
    ],
)
def test_bad_values_are_rejected(value, needle):
    with pytest.raises(ValueError, match=needle):
        parse_switch(value)


def test_too_wide_and_no_whole_channel_name_the_switch_and_layer():
    model = create_model("mobilenet_v1_small", num_classes=10, wide_factor=1.2)
    with pytest.raises(ValueError, match=r"switch \[0.7, 0.7\] spans width 1.4, wider .* 1.2"):
        model.resolve("[0.7, 0.7]")
    with pytest.raises(ValueError) as err:
        model.resolve("[0.5, 0.01, 0.49]")
    msg = str(err.value)
    assert "switch [0.5, 0.01, 0.49]" in msg and "sub-network 1" in msg and "layer 'stem'" in msg
    # the same errors surface through the forward pass
    import torch

    with pytest.raises(ValueError, match="wider than the model's maximum width"):
        model(torch.zeros(1, 1, 28, 28), switch="1.3")
    # a wide factor of 1.0 makes [1.2] too wide
    narrow = create_model("resnet_small", num_classes=10, wide_factor=1.0)
    with pytest.raises(ValueError, match=r"1\.2"):
        narrow.resolve("1.2")


# --- per-stage widths ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical", "stages", "key"),
    [
        ("[0.25/0.5/0.75/0.5, 0.5]", "[0.25/0.5/0.75/0.5, 0.5]", 4, "0p25s0p5s0p75s0p5_0p5"),
        ("[2x0.25/0.5, 0.5]", "[0.25/0.5, 0.25/0.5, 0.5]", 2, "0p25s0p5_0p25s0p5_0p5"),
        ("[3x0.125/0.25/0.25]", "[3x0.125/0.25/0.25]", 3, "3x0p125s0p25s0p25"),
        (" [ 0.5 / 0.25 ; 0.25/0.5 ] ", "[0.5/0.25, 0.25/0.5]", 2, "0p5s0p25_0p25s0p5"),
    ],
)
def test_per_stage_notation_round_trips(text, canonical, stages, key):
    s = parse_switch(text)
    assert str(s) == canonical
    assert parse_switch(str(s)) == s
    assert s.key == key and Switch.from_key(s.key) == s
    assert not s.is_uniform and s.num_stages == stages
    assert parse_switch(s.slug.replace("-", ", ").replace("_", "/").join("[]")) == s
    assert "." not in s.key and "/" not in s.slug  # a buffer name and a file name


def test_per_stage_values_and_equal_stages_collapse_to_uniform():
    s = Switch([(0.25, 0.5, 0.75, 0.5), 0.5])
    assert s == parse_switch("[0.25/0.5/0.75/0.5, 0.5]")
    assert s.stage_widths == ((0.25, 0.5, 0.75, 0.5), (0.5, 0.5, 0.5, 0.5))
    assert s.widths == (0.75, 0.5)  # nominal: a sub-network's widest stage
    assert s.total_exact == Fraction(5, 4)  # the widest stage: 0.75 + 0.5
    assert s.at_stage(2) == parse_switch("[0.75, 0.5]")
    assert parse_switch(["0.25/0.5", 0.5]) == Switch([(0.25, 0.5), 0.5])
    # a sub-network whose stages are equal is uniform: the uniform switch, its key and its statistics
    assert parse_switch("[0.5/0.5/0.5, 0.5]") == parse_switch("[0.5, 0.5]")
    assert parse_switch("[0.5/0.5/0.5, 0.5]").key == "0p5_0p5"
    assert parse_switch("[0.5/0.5, 0.5]").is_uniform
    assert hash(parse_switch("[0.5/0.5, 0.5]")) == hash(parse_switch("[0.5, 0.5]"))
    assert parse_switch("[0.25/0.5, 0.5]") != parse_switch("[0.5/0.25, 0.5]")
    assert len({parse_switch("[0.25/0.5, 0.5]"), parse_switch("[0.5/0.25, 0.5]"), parse_switch("[0.5, 0.5]")}) == 3


def test_per_stage_ranges_are_per_stage_contiguous_and_disjoint():
    s = parse_switch("[0.25/0.5/0.75, 0.5/0.25/0.25]")
    assert s.channel_ranges(32, 0) == ((0, 8), (8, 24))
    assert s.channel_ranges(32, 1) == ((0, 16), (16, 24))
    assert s.channel_ranges(32, 2) == ((0, 24), (24, 32))
    assert s.channels(32, 2) == 32
    for stage in range(3):
        for base in (8, 24, 40, 64, 100):
            r = s.channel_ranges(base, stage)
            assert r[0][0] == 0 and all(a[1] == b[0] for a, b in pairwise(r))
            assert r == s.at_stage(stage).channel_ranges(base)
    # a uniform switch ignores the stage
    assert parse_switch("[0.5, 0.5]").channel_ranges(32, 2) == parse_switch("[0.5, 0.5]").channel_ranges(32)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: parse_switch("[0.25/0.5, 0.25/0.5/0.5]"), r"different numbers of stage widths \[2, 3\]"),
        (lambda: parse_switch("[0.25/0/0.5]"), "must be positive"),
        (lambda: parse_switch("[0.25/x]"), "'x' is not a number"),
        (lambda: parse_switch("[0.25/0.5]").channel_ranges(32), "the layer it is applied to has no stage"),
        (lambda: parse_switch("[0.25/0.5]").channel_ranges(32, 2), "has 2 stages, there is no stage 2"),
        (lambda: parse_switch("[0.25/0.5]").check(num_stages=3), "gives 2 stage widths per sub-network"),
        (lambda: parse_switch("[0.25/0.5]").check(layers=[("conv", 32)]), "layer 'conv' has no stage"),
    ],
)
def test_per_stage_errors_name_the_problem(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()
