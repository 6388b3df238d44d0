"""Find workloads (`gapbench.workloads` entry points, `module:Class` or `file.py:Class`) and check
each against the plugin contract."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from harness.errors import UserError
from harness.params import Param, check_declared
from harness.workload import Stage, Workload, topological_order

ENTRY_POINT_GROUP = "gapbench.workloads"


def registered() -> dict[str, str]:
    """Workload name -> ``module:Class`` for every installed plugin, sorted by name."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Entry:
    """One registered workload as `gapbench workloads` lists it, or why it would not load."""

    name: str
    ref: str  # module:Class
    description: str
    stages: tuple[Stage, ...]
    problem: str = ""
    params: tuple[Param, ...] = ()


def catalogue() -> list[Entry]:
    """Every registered workload; one that will not load is listed with its problem, never
    hiding the others."""
    entries = []
    for name, ref in registered().items():
        try:
            cls = load(name)
        except UserError as exc:
            entries.append(Entry(name, ref, "", (), str(exc)))
            continue
        entries.append(Entry(name, ref, cls.description, cls.stages, params=cls.params))
    return entries


def suite() -> list[str]:
    """The registered workloads `gapbench run` runs when none is named."""
    return [name for name in registered() if load(name).in_suite]


def load(ref: str) -> type[Workload]:
    """The workload class a user named: a registered name, ``module:Class`` or ``file.py:Class``."""
    plugins = registered()
    if ref in plugins:
        ref = plugins[ref]
    elif ":" not in ref:
        known = ", ".join(plugins) or "none installed"
        raise UserError(f"unknown workload {ref!r} (known: {known}; or give module:Class)")
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise UserError(f"workload reference {ref!r} is not of the form module:Class")
    module = _import_file(target) if target.endswith(".py") else _import_module(target)
    cls = getattr(module, attr, None)
    if cls is None:
        raise UserError(f"{target} has no attribute {attr!r}")
    return check_contract(cls)


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise UserError(f"cannot import workload module {name!r}: {_one_line(exc)}") from exc


def _import_file(path_text: str):
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"workload file {path_text!r} does not exist")
    # A stable, unique module name so a file's classes pickle and hash the same way each run.
    name = "gapbench_plugin_" + "".join(c if c.isalnum() else "_" for c in str(path))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import workload file {path_text!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UserError(f"cannot import workload file {path_text!r}: {_one_line(exc)}") from exc
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_contract(cls: type) -> type[Workload]:
    """Check a class against the plugin contract; the error names what is wrong."""
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise UserError(
            f"{getattr(cls, '__qualname__', repr(cls))} is not a gapbench Workload subclass"
        )
    if not cls.name:
        raise UserError(f"workload class {cls.__qualname__} has no name")
    if not cls.stages:
        raise UserError(f"workload {cls.name!r} declares no stages")
    order = topological_order(cls.stages)
    sinks = [s for s in order if not any(s.name in other.after for other in order)]
    if len(sinks) != 1:
        raise UserError(f"workload {cls.name!r} must end in one stage, found {len(sinks)}")
    for stage in order:
        if not stage.name.isidentifier() or stage.name.startswith("_"):
            raise UserError(
                f"workload {cls.name!r}: stage {stage.name!r} cannot name a method "
                "(a Python identifier not starting with _)"
            )
        if stage.name in RESERVED:
            raise UserError(
                f"workload {cls.name!r}: stage {stage.name!r} would replace Workload.{stage.name}; "
                f"stages may not be named {', '.join(sorted(RESERVED))}"
            )
        if not callable(getattr(cls, stage.name, None)):
            raise UserError(f"workload {cls.name!r} has no method for stage {stage.name!r}")
    for condition in cls.conditions:
        for side in (condition.a, condition.b):
            if side.backend not in cls.backends:
                raise UserError(
                    f"workload {cls.name!r}: condition {condition.name!r} runs on "
                    f"{side.backend}, which it does not support"
                )
    check_declared(cls.name, cls.params)
    names = [c.name for c in cls.conditions]
    if len(set(names)) != len(names):
        raise UserError(f"workload {cls.name!r} declares a condition twice")
    if cls.virtual_check is not None and cls.virtual_check.stage not in {s.name for s in order}:
        raise UserError(
            f"workload {cls.name!r}: virtual_check names no stage: {cls.virtual_check.stage!r}"
        )
    return cls


# What the contract itself defines: a stage's method must not replace one of these.
RESERVED = frozenset(name for name in vars(Workload) if not name.startswith("_"))


def code_hash(cls: type[Workload]) -> str:
    """A hash of the workload's source: a changed workload is never compared with its old self."""
    digest = hashlib.sha256()
    modules = [cls.__module__, *cls.code_modules]
    for name in modules:
        module = sys.modules.get(name)
        try:
            source = inspect.getsource(module) if module is not None else name
        except (OSError, TypeError):
            source = inspect.getsource(cls)
        digest.update(name.encode())
        digest.update(source.encode())
    return digest.hexdigest()[:16]
