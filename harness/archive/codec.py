"""Frozen dataclasses to and from JSON: the one place a missing or mistyped key becomes an error.

Every file gapbench writes (a manifest, the fingerprint inside it, a replicate's facts, a kept
projection) is a frozen dataclass. ``to_dict`` turns one into plain JSON data; ``from_dict``
reads it back, checking every field against its type hint, and names the first key that is
missing or of the wrong type: ``config.work: missing 'request_stream'``. Keys the dataclass does
not know are left out (a writer's extra keys are not a reader's problem).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, Union

from harness.errors import UserError

T = TypeVar("T")


class DecodeError(ValueError):
    """A JSON value that does not fit its dataclass: ``where`` names the key, dotted."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem = where, problem


def to_dict(value: Any) -> Any:
    """A dataclass as plain JSON data, fields in declaration order but ``schema_version``
    first, where a reader looks for it; tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        if "schema_version" in names:
            names.insert(0, names.pop(names.index("schema_version")))
        return {name: to_dict(getattr(value, name)) for name in names}
    if isinstance(value, (tuple, list)):
        return [to_dict(v) for v in value]
    if isinstance(value, (frozenset, set)):
        return sorted(to_dict(v) for v in value)
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """``data`` read as ``cls``, every field checked against its type; a DecodeError names the
    first key that is missing or mistyped."""
    if not isinstance(data, Mapping):
        raise DecodeError(where, f"expected an object, not {_named(type(data))}")
    hints = _hints(cls)
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not field.init:
            continue
        inner = f"{where}.{field.name}" if where else field.name
        if field.name in data:
            values[field.name] = _read(hints[field.name], data[field.name], inner)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise DecodeError(where, f"missing {field.name!r}")
    try:
        return cls(**values)
    except (TypeError, ValueError, UserError) as exc:  # a __post_init__ refusing a value
        raise DecodeError(where, str(exc).splitlines()[0] if str(exc) else repr(exc)) from None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _read(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _read(option, value, where)
            except DecodeError as exc:
                problems.append(exc)
        raise problems[-1] if len(problems) == 1 else DecodeError(where, _mismatch(hint, value))
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        items = _sequence(hint, value, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
        if len(items) != len(args):
            raise DecodeError(where, f"expected {len(args)} items, not {len(items)}")
        pairs = enumerate(zip(args, items, strict=True))
        return tuple(_read(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if origin is list:
        items = _sequence(hint, value, where)
        return [_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(items)]
    if origin is frozenset:
        items = _sequence(hint, value, where)
        return frozenset(_read(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise DecodeError(where, _mismatch(hint, value))
        key, item = args or (str, Any)
        return {_read(key, k, where): _read(item, v, f"{where}.{k}") for k, v in value.items()}
    check = _SCALARS.get(hint)
    if check is None:
        raise TypeError(f"{where}: no reader for the type {hint!r}")
    if not check(value):
        raise DecodeError(where, _mismatch(hint, value))
    if hint in (int, float) and isinstance(value, int) and not -(2**63) <= value < 2**63:
        # Every count and time gapbench writes fits 64 bits; far bigger ones overflow a float.
        raise DecodeError(where, "an integer beyond 64 bits")
    return float(value) if hint is float else value


_SCALARS: dict[Any, Callable[[Any], bool]] = {
    str: lambda v: isinstance(v, str),
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _sequence(hint: Any, value: Any, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise DecodeError(where, _mismatch(hint, value))
    return list(value)


def _mismatch(hint: Any, value: Any) -> str:
    return f"expected {_named(hint)}, not {_named(type(value))}"


# JSON's own words for what a value is, used for what was expected and what was found alike.
_NAMES: dict[Any, str] = {
    dict: "an object",
    Mapping: "an object",
    list: "a list",
    tuple: "a list",
    frozenset: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _named(hint: Any) -> str:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_named(a) for a in typing.get_args(hint))
    hint = typing.get_origin(hint) or hint
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def deeper_than(body: Any, limit: int) -> bool:
    """Whether JSON ``body`` nests past ``limit`` levels (walked without recursion): every
    reader of a manifest recurses, and Python's stack ends near a thousand."""
    level: list[Any] = [body]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True
