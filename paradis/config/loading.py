"""Reading configurations: YAML with safe loading only (duplicate keys refused), ``key.path=value``
overrides, and validation errors as one line naming the source and the key path."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from paradis.config.schema import ConfigError, RunConfig
from paradis.switch import short
from paradis.util import first_line

MAX_SPEC_BYTES = 1_000_000  # a study or run configuration is a few kilobytes
MAX_ALIASES = 100  # YAML anchors are a convenience; thousands of aliases are an expansion bomb
MAX_NODES = 100_000  # values in the loaded document, counted through aliases


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_aliases(text: str, source: str) -> None:
    """Refuse documents with more aliases than :data:`MAX_ALIASES` before constructing them."""
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{source}: more than {MAX_ALIASES} YAML aliases (the limit)")


def _check_size(data, source: str) -> None:
    """Refuse a document whose values, counted through aliases, exceed :data:`MAX_NODES`."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"{source}: more than {MAX_NODES} values once aliases are expanded (the limit)")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def load_yaml_text(text: str, source: str):
    """Safe loading with duplicate keys refused and the alias and size limits; one-line errors."""
    try:
        _check_aliases(text, source)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(err, "problem", None) or first_line(err, None)
        raise ConfigError(f"{source}: not valid YAML{where}: {short(problem)[1:-1]}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    _check_size(data, source)
    return data


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (safe loading, duplicate keys rejected, size limits)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise ConfigError(f"{p}: larger than {MAX_SPEC_BYTES} bytes (the limit for a configuration)")
        text = p.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte {err.start})") from None
    data = load_yaml_text(text, str(p))
    if data is None:
        raise ConfigError(f"{p}: the file is empty; expected a mapping of settings")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top, got {type(data).__name__}")
    return data


def set_key(data: dict, key: str, value: Any) -> None:
    """Set a dotted key; a mapping merges into the section already there, key by key (an override of one
    key of a section never resets its other keys), anything else replaces what was there (``null``
    clears a section, so that a mapping set after it replaces it). The one rule of ``--set``, of a
    study's variants and of its searched values. ``ConfigError`` where a key's parent is no section."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{short(part)} is not a section")
        node = nxt
    last = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{short(str(k))} in {short(last)} is not a key (a key is a name)")
            set_key(node[last], k, v)
    else:
        node[last] = copy.deepcopy(value)


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply ``key.path=value`` overrides (values parsed as YAML); a mapping merges into the section
    already there, as a variant's does (:func:`set_key`)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {short(item)}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = load_yaml_text(raw, f"{source} {short(item)}") if raw.strip() else None
        except ConfigError as err:
            raise ConfigError(f"{source} {short(item)}: cannot read the value: {str(err).split(': ', 2)[-1]}") from None
        try:
            set_key(data, key.strip(), value)
        except ConfigError as err:
            raise ConfigError(f"{source} {short(item)}: {err}") from None
    return data


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: ``source: key.path: message (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        nested = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", msg)
        if nested and e["type"].startswith("value_error"):  # a check of a whole section names its key
            loc, msg = f"{loc}.{nested.group(1)}" if loc else nested.group(1), nested.group(2)
        got = "" if e["type"] in ("extra_forbidden", "missing") else f" (got {short(e.get('input'))})"
        if e["type"].startswith("value_error") or e["type"] == "assertion_error":
            got = ""
        loc, msg = _cut(loc or "(top)"), _cut(msg, 400)
        lines.append(f"{source}: {loc}: {msg}{got}")
    return "\n".join(lines)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def validate(model: type[BaseModel], data: dict, source: str, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(first_line(format_validation_error(err, source, prefix), None)) from None


def load_run_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> RunConfig:
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return validate(RunConfig, data, str(path) if path is not None else "config")
