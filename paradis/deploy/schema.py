"""Strict pydantic schemas of the JSON files deploy reads (manifests, plan tables, latency tables):
the shared base model, bounded number types, file names that stay inside an export folder, and a
validation error as one line naming the key path and the value (as :mod:`paradis.config` does).

Numbers are strict: a string, a boolean or (for a count) a float is refused, and so is NaN or an
infinity; a file name is refused by the one rule of :func:`paradis.deploy.files.check_name`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from paradis.deploy.files import ExportError, check_name, quote
from paradis.switch import parse_switch

STRICT = ConfigDict(extra="forbid", strict=True)
# the error types whose message starts with the value (the path is put in front of it)
_OWN = {"outside", "file_name", "not_one_of", "sha256", "not_a_name"}
_KINDS = {
    "int_type": "an integer",
    "float_type": "a finite number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "none_required": "null",
}


class Strict(BaseModel):
    """A schema: unknown keys refused, no type coercion."""

    model_config = STRICT


def fail(kind: str, message: str) -> NoReturn:
    """Raise the error ``kind`` whose ``message`` starts with the quoted value (see :func:`one_line`)."""
    raise PydanticCustomError(kind, "{message}", {"message": message})


def _span(low: float | None, high: float | None) -> str:
    def text(v: float | None, inf: str) -> str:
        return inf if v is None else str(v) if isinstance(v, int) else f"{v:g}"

    return f"[{text(low, '-inf')}, {text(high, 'inf')}]"


def _within(low: float | None, high: float | None) -> AfterValidator:
    def check(v: Any) -> Any:
        if (low is not None and v < low) or (high is not None and v > high):
            fail("outside", f"{quote(v)} is outside {_span(low, high)}")
        return v

    return AfterValidator(check)


def _integral(v: Any) -> Any:
    """JSON writes ``1e9`` for a billion: a float with an integer value is that integer."""
    return int(v) if isinstance(v, float) and math.isfinite(v) and v == int(v) else v


MAX_COUNT = 10**18  # bytes, multiply-adds, parameters: far above any model, far below a float's reach


def count(low: int = 0, high: int = MAX_COUNT, *, integral_floats: bool = False) -> Any:
    """An int (not a bool, not a float unless ``integral_floats`` and integer-valued) in ``[low, high]``
    (bounded: a 400-digit count would overflow the floats the planner computes with)."""
    before = [BeforeValidator(_integral)] if integral_floats else []
    return Annotated[(int, *before, _within(low, high))]


def number(low: float | None = None, high: float | None = None) -> Any:
    """A finite int or float (not a bool) in ``[low, high]``."""
    return Annotated[float, Field(allow_inf_nan=False), _within(low, high)]


def _file_name(name: str) -> str:
    try:
        return check_name(name, "")
    except ExportError as err:
        fail("file_name", str(err).removeprefix(": file name "))


def _switch_text(text: str) -> str:
    parse_switch(text)  # its ValueError names what is wrong
    return text


FileName = Annotated[str, AfterValidator(_file_name)]
SwitchText = Annotated[str, AfterValidator(_switch_text)]  # a switch in the paper's notation, kept as written


def _path(loc: tuple[int | str, ...], sep: str, item: str) -> str:
    """``model.num_classes``, ``devices[0].state_file``, ``files['a b'].sha256``; a dict key's own error
    (``[key]``) names the mapping."""
    if len(loc) >= 2 and loc[-1] == "[key]":
        loc = loc[:-2]
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += item.format(part)
        elif part.isidentifier():
            text += f"{sep}{part}" if text else part
        else:
            text += f"[{quote(part, 60)}]"
    return text


def describe(e: Any, *, sep: str = ".", item: str = "[{}]") -> str:
    """One pydantic error as ``path value is not ...`` (or ``path: what is wrong``)."""
    path, kind = _path(tuple(e["loc"]), sep, item), e["type"]
    value = quote(e.get("input"))
    if kind == "missing":
        return f"lacks {quote(path)}"
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind in _KINDS:
        text = f"{value} is not {_KINDS[kind]}"
    elif kind == "literal_error":
        text = f"{value} is not one of {e['ctx']['expected']}"
    elif kind in _OWN:
        text = e["msg"]
    else:
        msg = e["msg"].removeprefix("Value error, ")
        return f"{path}: {msg}" if path else msg
    return f"{path} {text}" if path else text


def one_line(err: ValidationError, *, sep: str = ".", item: str = "[{}]") -> str:
    """The first problem of ``err`` as one line (``item``: how a list position is written)."""
    return describe(err.errors(include_url=False)[0], sep=sep, item=item)[:600]
