"""Typed dataclass configs from TOML tables and ``key=value`` command-line strings."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from maskkit.errors import ConfigError as ConfigError  # importable from here as before maskkit.errors

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"option `{name}`: cannot use {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"option `{name}` must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(";", ",").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option `{name}` expects a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v.strip() if isinstance(v, str) else v, item_type, name) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"option `{name}` expects true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"option `{name}` expects an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option `{name}` expects an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"option `{name}` expects an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option `{name}` expects a number, got {value!r}") from None
    if annotation is str:
        return str(value)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"option `{name}` expects a table, got {value!r}")
        return build_dataclass(annotation, value, prefix=f"{name}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"option `{name}` expects a table, got {value!r}")
        return dict(value)
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], prefix: str = "", base: T | None = None) -> T:
    """Make ``cls`` from ``values`` (strings allowed), rejecting unknown keys with the valid list.

    Keys may use dashes or underscores. ``base`` supplies defaults other than the class defaults.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    if base is not None:
        kwargs = {name: getattr(base, name) for name in fields}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in fields:
            valid = ", ".join(sorted(k.replace("_", "-") for k in fields))
            raise ConfigError(f"unknown option `{prefix}{raw_key}`; valid options: {valid}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None
    return obj


def read_toml(path: str | Path, label: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is one ConfigError line starting with ``label``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{label} {p}: no such file")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label} {p}: not valid TOML ({exc})") from None


def parse_key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` with a clear error for malformed items."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{option} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """Plain dict (tuples as lists) for JSON/TOML/checkpoints."""
    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        return v

    return convert(obj)


def fields_help(cls: type) -> list[tuple[str, str, str]]:
    """(name, type, default) rows for ``maskkit list`` and docs."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        rows.append((f.name.replace("_", "-"), type_label(hints[f.name]), repr(default)))
    return rows


def type_label(annotation: Any) -> str:
    """Readable type for help tables: Literal choices spelled out, None left out of unions."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(map(str, args))
    if origin in (Union, types.UnionType):
        return " | ".join(type_label(a) for a in args if a is not type(None))
    if origin in (tuple, list):
        return f"list of {type_label(args[0])}" if args else "list"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
