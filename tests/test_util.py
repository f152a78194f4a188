import pytest

from paradis.util import first_line


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (ValueError("bad value\nTraceback (most recent call last):\n..."), 300, "bad value"),
        (ValueError("  \n  padded\nmore"), 300, "padded"),
        (KeyError(), 300, "KeyError"),
        (RuntimeError("x" * 500), 200, "x" * 200),
        ("a: line one\nline two", None, "a: line one"),
        ("", None, ""),
    ],
)
def test_first_line_is_what_a_one_line_refusal_quotes(value, limit, expected):
    assert first_line(value, limit) == expected
