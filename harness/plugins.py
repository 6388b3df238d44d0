"""Find workloads: `gapbench.workloads` entry points, `module:Class` or `file.py:Class`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from harness.errors import UserError
from harness.params import Param
from harness.workload import Stage, Workload, check_contract

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
