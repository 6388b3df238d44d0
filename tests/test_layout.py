"""The package map holds: imports go down the layers, measure and analysis never meet, and no
module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"

# Bottom to top, in the README's order; a module may import its own package and those of a
# lower rank only.
RANKS = {
    "errors": 0,
    "words": 0,  # errors, words, conditions and params import no more than errors
    "conditions": 0,
    "params": 0,  # a workload's parameters: errors only
    "record": 1,
    "machine": 2,
    "backends": 3,
    "workload": 4,
    "plugins": 5,
    "archive": 6,
    "measure": 7,
    "analysis": 7,  # siblings of measure: the archive is their contract
    "projection": 8,
    "experiments": 9,
    "report": 10,
    "cli": 11,
}


def _package(module: str) -> str:
    name = module.split(".")[1] if module.count(".") else ""
    return "" if name == "__main__" else name


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, include_typing: bool) -> set[str]:
    """The harness modules ``path`` imports, anywhere in it (functions too)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if not include_typing:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        # Relative imports would hide an arrow from this check: gapbench writes none.
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"relative import in {path}"
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("harness")}
    modules = _modules()
    return {name for name in found if name in modules}


def test_every_module_is_in_a_package_of_the_map():
    packages = {_package(name) for name in _modules()} - {""}
    assert packages <= set(RANKS), packages - set(RANKS)
    assert {n for n in _modules() if n.count(".") == 1} >= {"harness.workload", "harness.cli"}


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_go_down_the_map(module: str):
    own = _package(module)
    if not own:  # harness/__init__.py and __main__.py sit above it all
        return
    for imported in _imports(_modules()[module], include_typing=True):
        other = _package(imported)
        if not other or other == own:
            continue
        assert {own, other} != {"measure", "analysis"}, f"{module} imports {imported}"
        assert RANKS[other] <= RANKS[own], f"{module} ({own}) imports {imported} ({other})"


def test_no_import_circle():
    modules = _modules()
    graph = {name: _imports(path, include_typing=False) - {name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            circle = [*stack[stack.index(name) :], name]
            pytest.fail("import circle: " + " -> ".join(circle))
        if name in done:
            return
        for other in sorted(graph.get(name, ())):
            # A package's __init__ importing its own submodules is how a package is built.
            if not other.startswith(name + "."):
                visit(other, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
