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
    "stage:generate" = 3              # a whole stage: its compute and movement, not its waits
    "memory-bound" = 2.3              # a class of compute (harness.analysis.roofline)

or in a vendor's terms, two spec sheets or two calibrations (``harness.projection.spec``), from
which each class of compute gets its speedup. ``threads = N`` says the speedup runs with N
intra-op threads; a ``[threads]`` table gives them per key (``"*"`` for the others).

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
from harness.machine.threads import THREADS, whole_threads
from harness.projection.spec import (
    MAX_FACTOR,
    MIN_FACTOR,
    Calibrated,
    Spec,
    from_calibrations,
    from_spec,
)
from harness.words import CATEGORIES, COMPUTE_CLASSES, RESOURCES, Category

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

SCOPES = ("layer", "stage")
CLASSES = COMPUTE_CLASSES  # of compute: see harness.analysis.roofline
WHOLE = (Category.COMPUTE.value, Category.MOVEMENT.value)  # what a whole stage's key speeds


@dataclass(frozen=True)
class Target:
    """Where a speedup applies: an optional scope, and a resource, a category or both."""

    key: str
    scope: str = ""  # "", "layer" or "stage"
    scope_name: str = ""
    resource: str = ""
    category: str = ""
    klass: str = ""  # a class of compute, resolved per stage from its roofline

    @property
    def rank(self) -> tuple[int, int]:
        """Precedence: higher wins (stage > layer > unscoped; resource.category > resource >
        category)."""
        scope = {"": 0, "layer": 1, "stage": 2}[self.scope]
        specificity = 2 if self.resource and self.category else 1 if self.resource else 0
        if not (self.resource or self.category or self.klass):
            specificity = -1  # a whole stage or layer: any narrower key of the same scope wins
        return scope, specificity

    def matches(self, stage: str, layer: str, category: str, resource: str) -> bool:
        """Whether the key speeds a stretch up (a class key never does itself: it becomes a
        stage's compute factor once the stage's classes are known)."""
        if self.klass:
            return False
        if self.scope and not (self.resource or self.category) and category not in WHOLE:
            return False
        return self.in_scope(stage, layer) and self._on(category, resource)

    def in_scope(self, stage: str, layer: str) -> bool:
        if self.scope == "stage" and self.scope_name != stage:
            return False
        return not (self.scope == "layer" and self.scope_name != layer)

    def _on(self, category: str, resource: str) -> bool:
        if self.resource and self.resource != resource:
            return False
        return not self.category or self.category == category


def parse_key(key: str) -> Target:
    """``[layer:NAME/|stage:NAME/]resource|category|resource.category|class`` as a target, or
    ``layer:NAME`` / ``stage:NAME`` alone for the whole of it."""
    scope = scope_name = ""
    target = key
    whole, sep, name = key.partition(":")
    if sep and "/" not in key and whole in SCOPES and name:
        return Target(key, whole, name)
    if "/" in key:
        scoped, _, target = key.partition("/")
        scope, sep, scope_name = scoped.partition(":")
        if not sep or scope not in SCOPES or not scope_name:
            raise ValueError(f"a scope is layer:NAME or stage:NAME, not {scoped!r}")
    resource, sep, category = target.partition(".")
    if not sep:  # one word: a resource, a category or a class of compute
        if target in CLASSES:
            return Target(key, scope, scope_name, klass=target)
        if target in RESOURCES:
            resource, category = target, ""
        elif target in CATEGORIES:
            resource, category = "", target
        else:
            raise ValueError(
                f"{target!r} is not a resource ({', '.join(RESOURCES)}), a category "
                f"({', '.join(CATEGORIES)}) nor a class of compute ({', '.join(CLASSES)}); "
                "a whole stage is stage:NAME"
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
    # replay then asks that many cores of each compute stretch a key matched.
    threads: int | None = None
    # Per key, where it differs from ``threads`` (a pure-Python stage keeps one thread); a
    # stage's compute resolved from classes may run on a fraction of a core more on average.
    key_threads: tuple[tuple[str, float], ...] = ()
    # Two machines' spec sheets or calibrations, read as a speedup per class of compute.
    spec: Spec | Calibrated | None = None

    def __post_init__(self) -> None:
        # The parsers say which key of which file; this holds for a claim made in code too.
        for target, value in self.speedups:
            in_range(f"claim {self.name!r}: key {target.key!r}", value, MIN_FACTOR, MAX_FACTOR)
        if self.threads is not None:
            in_range(f"claim {self.name!r}: threads", self.threads, *THREADS)
        keys = {target.key for target, _ in self.speedups} | {"*"}
        for key, count in self.key_threads:
            if key not in keys:
                raise UserError(f"claim {self.name!r}: [threads] key {key!r} is no speedup's key")
            in_range(f"claim {self.name!r}: threads of {key!r}", count, *THREADS)

    def factor(self, stage: str, layer: str, category: str, resource: str) -> tuple[float, str]:
        """The speedup for a stretch of time, and the key it came from ("" and 1.0: none)."""
        best: tuple[Target, float] | None = None
        for target, factor in self.speedups:
            if target.matches(stage, layer, category, resource) and (
                best is None or target.rank > best[0].rank
            ):
                best = (target, factor)
        return (1.0, "") if best is None else (best[1], best[0].key)

    def threads_for(self, stage: str, layer: str, category: str, resource: str) -> float | None:
        """The threads a stretch runs with under the claim: its key's own, else the claim's
        (None: as recorded, for a stretch no key matched or a claim without threads)."""
        _, key = self.factor(stage, layer, category, resource)
        return self.threads_of(key) if key else None

    def threads_of(self, key: str) -> float | None:
        """The threads a key's speedup runs with (None: as recorded)."""
        own = dict(self.key_threads)
        return own.get(key, own.get("*", self.threads))

    @property
    def by_class(self) -> bool:
        """Whether the claim speaks of classes of compute (keys or specs): projecting it needs
        the set's roofline (``harness.projection.transfer``)."""
        return self.spec is not None or any(t.klass for t, _ in self.speedups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "date": self.date,
            "path": self.path,
            "speedup": {target.key: factor for target, factor in self.speedups},
            "threads": self.threads,
            "key_threads": dict(self.key_threads),
        }


def _speedups(
    items: Iterable[tuple[str, Any]], where: str, allow_none: bool = False
) -> tuple[tuple[Target, float], ...]:
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
    if not out and not allow_none:
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
    unknown = set(body) - {"name", "source", "date", "speedup", "threads", "spec", "calibration"}
    if unknown:
        raise UserError(f"{path}: key {sorted(unknown)[0]!r}: not a claim field")
    spec: Spec | Calibrated | None = None
    if "spec" in body and "calibration" in body:
        raise UserError(
            f"{path}: give [spec] or [calibration], not both: spec is compared with spec, "
            "measured with measured"
        )
    if "spec" in body:
        spec = from_spec(body["spec"], str(path))
    elif "calibration" in body:
        spec = from_calibrations(body["calibration"], str(path), path.parent)
    table = body.get("speedup", {} if spec is not None else None)
    if table is None:
        raise UserError(
            f"{path}: no [speedup] table: add one, with KEY = factor lines (or two machines' "
            "[spec.reference] and [spec.candidate])"
        )
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
    per_key = threads if isinstance(threads, dict) else {}
    for key, count in (per_key or {"threads": threads}).items():
        whole_threads(count, f"{path}: key {'threads' if not per_key else f'threads.{key}'!r}")
    speedups = _speedups(table.items(), str(path), allow_none=spec is not None)
    if spec is not None and any(t.klass for t, _ in speedups):
        raise UserError(
            f"{path}: classes of compute come from the specs here: drop the class keys, or "
            "the specs"
        )
    keys = {t.key for t, _ in speedups} | {"*"}
    for key in per_key:
        if key not in keys:
            raise UserError(f"{path}: key 'threads.{key}': no speedup has that key")
    try:
        return Claim(
            name=name,
            speedups=speedups,
            source=str(body.get("source", "")),
            date=str(when),
            path=str(path),
            threads=None if per_key else threads,
            key_threads=tuple((k, float(v)) for k, v in per_key.items()),
            spec=spec,
        )
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


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
