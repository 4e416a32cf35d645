"""No import circle between the modules of a package, type-only imports included.

Every ``import`` and ``from ... import`` statement of every module counts, wherever it is: at
module level, under ``if TYPE_CHECKING:`` and inside functions. A deferred import hides a circle
from the interpreter, not from a reader: both ends still need each other.

How a statement becomes an edge (modules outside the package are ignored):

* ``import a.b.c`` and ``from a.b import c`` where ``a.b.c`` is a module: an edge to ``a.b.c``;
* ``from a.b import name`` where ``name`` is not a module: an edge to ``a.b``, i.e. the package
  ``a/b/__init__.py`` that defines or re-exports ``name``;
* relative imports are resolved against the importing module first;
* the parent packages Python runs before a submodule (``a`` and ``a.b`` for ``a.b.c``) add no
  edge: otherwise every module a package's ``__init__`` re-exports would be in a circle with it.
  A module that imports its *own* package's ``__init__`` (``from a.b import x`` inside
  ``a/b/_y.py`` while ``a/b/__init__.py`` imports ``_y``) is a circle and is reported.

Every package of the project is in ``PACKAGES``, checked as one graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages checked, as folders of the repository root.
PACKAGES = ("mcmc_core", "sweeps", "hydra_plugins")


def modules_of(package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` (a package's name is its
    ``__init__.py``)."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``module`` (the file ``path``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    return {t for t in targets if t in modules and t != module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or None (a depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:  # every import of path[-1] explored: no circle through it
                done.add(path.pop())
                stack.pop()
            elif nxt in path:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in done:
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_reports_a_circle_and_only_a_circle() -> None:
    # A type-only edge back makes a circle like any other; a diamond is not one.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None


def test_imported_counts_type_only_and_local_imports(tmp_path: Path) -> None:
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from pkg.b import B\n"
              "def f():\n    from . import c\n    import pkg.d\n"
              "from pkg import name_in_init\n")
    path = tmp_path / "a.py"
    path.write_text(source)
    modules = {m: tmp_path for m in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d")}
    # Every statement counts; a name that is no module is an edge to the package's __init__.
    assert imported("pkg.a", path, modules) == {"pkg", "pkg.b", "pkg.c", "pkg.d"}


def test_no_import_circle() -> None:
    """One graph over every package: an import circle may cross packages."""
    modules = {name: path for package in PACKAGES for name, path in modules_of(package).items()}
    # Each module -> the project's modules it imports.
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    # Every package has modules, and they import one another.
    assert all(any(m.startswith(p + ".") for m in graph) for p in PACKAGES)
    assert any(graph.values())
    cycle = find_cycle(graph)
    # No circle, type-only and function-local imports included.
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])
