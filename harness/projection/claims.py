"""A vendor's claim: speedups for a resource, a category of work, or both, optionally scoped.

A claim file is TOML::

    name = "Vendor X CPU"
    source = "datasheet, p. 4"
    date = 2026-11-01

    [speedup]
    "host-cpu.compute" = 1.5          # resource.category
    "device" = 2.0                    # a resource: every category on it
    "layer:inference/compute" = 1.8   # scoped to a layer of the stage DAG
    "stage:embed/movement" = 1.2      # scoped to one stage

Exactly one factor applies to a stretch of time (factors never multiply): a stage scope wins over
a layer scope over none, and within a scope ``resource.category`` over ``resource`` over
``category``.
"""

from __future__ import annotations

import datetime
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError, in_range
from harness.machine.threads import THREADS
from harness.words import CATEGORIES, RESOURCES

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

SCOPES = ("layer", "stage")
# A claimed speedup outside these is a typo, not a chip (and would stall the replay's clock).
MIN_FACTOR, MAX_FACTOR = 0.001, 1000.0


@dataclass(frozen=True)
class Target:
    """Where a speedup applies: an optional scope, and a resource, a category or both."""

    key: str
    scope: str = ""  # "", "layer" or "stage"
    scope_name: str = ""
    resource: str = ""
    category: str = ""

    @property
    def rank(self) -> tuple[int, int]:
        """Precedence: higher wins (stage > layer > unscoped; resource.category > resource >
        category)."""
        scope = {"": 0, "layer": 1, "stage": 2}[self.scope]
        specificity = 2 if self.resource and self.category else 1 if self.resource else 0
        return scope, specificity

    def matches(self, stage: str, layer: str, category: str, resource: str) -> bool:
        if self.scope == "stage" and self.scope_name != stage:
            return False
        if self.scope == "layer" and self.scope_name != layer:
            return False
        if self.resource and self.resource != resource:
            return False
        return not self.category or self.category == category


def parse_key(key: str) -> Target:
    """``[layer:NAME/|stage:NAME/]resource|category|resource.category`` as a target."""
    scope = scope_name = ""
    target = key
    if "/" in key:
        scoped, _, target = key.partition("/")
        scope, sep, scope_name = scoped.partition(":")
        if not sep or scope not in SCOPES or not scope_name:
            raise ValueError(f"a scope is layer:NAME or stage:NAME, not {scoped!r}")
    resource, sep, category = target.partition(".")
    if not sep:  # one word: a resource or a category
        if target in RESOURCES:
            resource, category = target, ""
        elif target in CATEGORIES:
            resource, category = "", target
        else:
            raise ValueError(
                f"{target!r} is neither a resource ({', '.join(RESOURCES)}) "
                f"nor a category ({', '.join(CATEGORIES)})"
            )
    else:
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r} (one of {', '.join(RESOURCES)})")
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
    return Target(key, scope, scope_name, resource, category)


@dataclass(frozen=True)
class Claim:
    """A named set of speedups, with where it came from."""

    name: str
    speedups: tuple[tuple[Target, float], ...]
    source: str = ""
    date: str = ""
    path: str = ""
    # Intra-op threads the claimed speedup runs with, where it comes from more threads: the
    # replay then asks that many cores of each compute stretch.
    threads: int | None = None

    def __post_init__(self) -> None:
        # The parsers say which key of which file; this holds for a claim made in code too.
        for target, value in self.speedups:
            in_range(f"claim {self.name!r}: key {target.key!r}", value, MIN_FACTOR, MAX_FACTOR)
        if self.threads is not None:
            in_range(f"claim {self.name!r}: threads", self.threads, *THREADS)

    def factor(self, stage: str, layer: str, category: str, resource: str) -> tuple[float, str]:
        """The speedup for a stretch of time, and the key it came from ("" and 1.0: none)."""
        best: tuple[Target, float] | None = None
        for target, factor in self.speedups:
            if target.matches(stage, layer, category, resource) and (
                best is None or target.rank > best[0].rank
            ):
                best = (target, factor)
        return (1.0, "") if best is None else (best[1], best[0].key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "date": self.date,
            "path": self.path,
            "speedup": {target.key: factor for target, factor in self.speedups},
            "threads": self.threads,
        }


def _speedups(items: Iterable[tuple[str, Any]], where: str) -> tuple[tuple[Target, float], ...]:
    out = []
    seen: set[str] = set()
    for key, value in items:
        if isinstance(value, dict):  # TOML read an unquoted dotted key as a table
            raise UserError(
                f'{where}: key {key!r}: quote a dotted key: "{key}.{next(iter(value), "...")}" = X'
            )
        try:
            target = parse_key(key)
        except ValueError as exc:
            raise UserError(f"{where}: key {key!r}: {exc}") from None
        if key in seen:
            raise UserError(f"{where}: key {key!r}: given twice")
        seen.add(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: key {key!r}: a speedup is a number, not {value!r}")
        if not math.isfinite(value) or not MIN_FACTOR <= value <= MAX_FACTOR:
            raise UserError(
                f"{where}: key {key!r}: a speedup must be a positive number from "
                f"{MIN_FACTOR:g} up to {MAX_FACTOR:g}, not {value:g}"
            )
        out.append((target, float(value)))
    if not out:
        raise UserError(f"{where}: no speedups: give at least one KEY = factor")
    return tuple(out)


def load(path: str | Path) -> Claim:
    """A claim from a TOML file; a malformed one is a UserError naming the file and the key."""
    if not str(path).strip():
        raise UserError("--claim: the claim file's path is empty")
    path = Path(path)
    try:
        body = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"claim file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read claim file {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(body) - {"name", "source", "date", "speedup", "threads"}
    if unknown:
        raise UserError(f"{path}: key {sorted(unknown)[0]!r}: not a claim field")
    table = body.get("speedup")
    if table is None:
        raise UserError(f"{path}: no [speedup] table: add one, with KEY = factor lines")
    if not isinstance(table, dict):
        raise UserError(f"{path}: key 'speedup': a table of KEY = factor, not {table!r}")
    name = body.get("name")
    if name is None:
        raise UserError(f"{path}: key 'name': every claim needs a name")
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{path}: key 'name': a name is a non-empty string, not {name!r}")
    when = body.get("date", "")
    if isinstance(when, str) and when:
        try:
            when = datetime.date.fromisoformat(when)
        except ValueError:
            raise UserError(
                f"{path}: key 'date': a date such as 2026-11-01, not {when!r}"
            ) from None
    elif not isinstance(when, str | datetime.date):
        raise UserError(f"{path}: key 'date': a date such as 2026-11-01, not {when!r}")
    threads = body.get("threads")
    if threads is not None and (
        isinstance(threads, bool)
        or not isinstance(threads, int)
        or not THREADS[0] <= threads <= THREADS[1]
    ):
        raise UserError(
            f"{path}: key 'threads': a whole number of threads, {THREADS[0]} to {THREADS[1]}"
        )
    return Claim(
        name=name,
        speedups=_speedups(table.items(), str(path)),
        source=str(body.get("source", "")),
        date=str(when),
        path=str(path),
        threads=threads,
    )


def from_arguments(pairs: Sequence[str], threads: int | None = None) -> Claim:
    """A claim from ``--speedup KEY=X`` arguments (and ``--threads N``)."""
    items = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep:
            raise UserError(f"--speedup {pair!r}: expected KEY=FACTOR, e.g. host-cpu.compute=1.5")
        if number is None:
            raise UserError(f"--speedup {pair!r}: the factor {value.strip()!r} is not a number")
        items.append((key.strip(), number))
    if threads is not None:
        in_range("--threads", threads, *THREADS)
    name = ", ".join(pairs)
    speedups = _speedups(items, "--speedup")
    return Claim(name=name, speedups=speedups, source="command line", threads=threads)
