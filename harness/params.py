"""Workload parameters: declared by a plugin, typed by the user (`--set`, `--params`), checked.

A parameter changes either the *work* (what is computed: two sets given different values are
not comparable) or only the *execution* (how the same work runs: what a comparison varies).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError, in_range, number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

WORK = "work"
EXECUTION = "execution"
Value = bool | int | float | str
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NAMED = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One parameter a workload takes: its type is its default's; a number has a range, a
    string or a number may list its allowed values instead."""

    name: str
    default: Value
    help: str = ""
    changes: str = WORK  # WORK or EXECUTION
    choices: tuple[Value, ...] = ()
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise UserError(f"parameter {self.name!r} is not an identifier")
        if self.changes not in (WORK, EXECUTION):
            raise UserError(f"parameter {self.name!r} changes {WORK} or {EXECUTION}")
        numeric = self.kind in (int, float)
        if numeric and not self.choices and (self.low is None or self.high is None):
            raise UserError(f"parameter {self.name!r} is a number: give it a range or choices")
        object.__setattr__(self, "choices", tuple(self.choices))
        self.check(self.default)

    @property
    def kind(self) -> type:
        return type(self.default)

    def allowed(self) -> str:
        """What a user may give, in words."""
        if self.choices:
            return " | ".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true | false"
        if self.low is not None and self.high is not None:
            return f"{number(self.low)} to {number(self.high)}"
        return self.kind.__name__

    def parse(self, text: str) -> Value:
        """A typed value from what a user typed after ``NAME=``."""
        kind = self.kind
        value: Value
        try:
            if kind is bool:
                if text.lower() not in _TRUE + _FALSE:
                    raise ValueError(text)
                value = text.lower() in _TRUE
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise UserError(
                f"parameter {self.name}={text}: not {_NAMED[kind]} ({self.allowed()})"
            ) from None
        return self.check(value)

    def check(self, value: object) -> Value:
        """``value`` if it is of this parameter's type and allowed; a UserError naming it."""
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # type(), not isinstance: True is an int to Python, never to a user.
        if type(value) is not kind or not isinstance(value, bool | int | float | str):
            raise UserError(
                f"parameter {self.name}={value!r}: not {_NAMED[kind]} ({self.allowed()})"
            )
        if self.choices:
            if value not in self.choices:
                raise UserError(f"parameter {self.name}={value}: one of {self.allowed()}")
        elif not isinstance(value, bool | str):
            assert self.low is not None and self.high is not None
            in_range(f"parameter {self.name}", value, self.low, self.high)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind.__name__,
            "default": self.default,
            "allowed": self.allowed(),
            "changes": self.changes,
            "help": self.help,
        }


@dataclass(frozen=True)
class Given:
    """What a user gave: values for every workload of a run, and values scoped to one."""

    common: Mapping[str, Any]
    scoped: Mapping[str, Mapping[str, Any]]  # workload name -> its values

    @classmethod
    def read(cls, sets: Sequence[str] = (), file: str | None = None) -> Given:
        """``--params FILE.toml`` (top-level keys for every workload, a table per workload),
        then each ``--set [WORKLOAD.]NAME=VALUE`` over it, in order."""
        common: dict[str, Any] = {}
        scoped: dict[str, dict[str, Any]] = {}
        if file is not None:
            for key, value in toml_file(file).items():
                if isinstance(value, dict):
                    scoped.setdefault(key, {}).update(value)
                else:
                    common[key] = value
        for item in sets:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UserError(f"--set {item!r}: expected NAME=VALUE or WORKLOAD.NAME=VALUE")
            workload, dot, name = key.rpartition(".")
            # A typed value is parsed by the parameter it lands on; kept as text until then.
            target = scoped.setdefault(workload, {}) if dot else common
            target[name] = _Typed(text.strip())
        return cls(common, scoped)

    def check_names(self, workloads: Mapping[str, Sequence[Param]]) -> None:
        """Every name given belongs to a workload of the run (none is silently dropped)."""
        for workload in self.scoped:
            if workload not in workloads:
                raise UserError(
                    f"parameters given for workload {workload!r}, which this run does not run "
                    f"({', '.join(workloads)})"
                )
        taken = {p.name for params in workloads.values() for p in params}
        for name in self.common:
            if name not in taken:
                each = "; ".join(
                    f"{w} takes {', '.join(sorted(p.name for p in ps)) or 'none'}"
                    for w, ps in workloads.items()
                )
                raise UserError(f"unknown parameter {name!r} ({each})")

    def values(self, workload: str, params: Sequence[Param]) -> dict[str, Value]:
        """Every parameter of ``workload``: given, or its default; each checked."""
        declared = {p.name: p for p in params}
        mine = self.scoped.get(workload, {})
        for name in mine:
            if name not in declared:
                raise UserError(_unknown(name, workload, sorted(declared)))
        given = {k: v for k, v in self.common.items() if k in declared} | dict(mine)
        return resolve(params, given)


def resolve(params: Sequence[Param], given: Mapping[str, Any]) -> dict[str, Value]:
    """Every parameter: its value in ``given`` (typed, or text from the command line), else
    its default; each checked. Names ``given`` holds that no parameter has are ignored."""
    out: dict[str, Value] = {}
    for param in params:
        raw = given.get(param.name, param.default)
        out[param.name] = param.parse(raw.text) if isinstance(raw, _Typed) else param.check(raw)
    return out


@dataclass(frozen=True)
class _Typed:
    """A value typed on the command line: text until its parameter says what type it is."""

    text: str


def split(params: Iterable[Param], values: Mapping[str, Value]) -> tuple[dict, dict]:
    """(work values, execution values) of ``values``, by what each parameter changes."""
    changes = {p.name: p.changes for p in params}
    work = {k: v for k, v in sorted(values.items()) if changes[k] == WORK}
    execution = {k: v for k, v in sorted(values.items()) if changes[k] == EXECUTION}
    return work, execution


def check_declared(workload: str, params: Sequence[Param]) -> None:
    """A workload declares each parameter once."""
    names = [p.name for p in params]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"workload {workload!r} declares parameter {name!r} twice")


def _unknown(name: str, where: str, known: Sequence[str]) -> str:
    takes = f"it takes {', '.join(known)}" if known else "it takes none"
    return f"unknown parameter {name!r} for {where} ({takes})"


def toml_file(file: str, option: str = "--params") -> dict[str, Any]:
    """The TOML file an option names, read whole; any fault in it is one line naming both."""
    if not file.strip():
        raise UserError(f"{option}: the file's path is empty")
    path = Path(file)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"{option} {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__  # a folder, a permission
        raise UserError(f"{option} {file}: unreadable ({why})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{option} {file}: not TOML ({exc})") from None
