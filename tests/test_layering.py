"""Imports go one way, down the layers: no two claimkit modules import each other, and lm never imports organism.

Read from the source (ast), not from what an import happens to load: every import
statement counts, at module level, inside a function (the lazy imports that keep
torch out of start-up) or under `if TYPE_CHECKING:`, because each one is a
dependency a reader has to follow. A module depends on the module it names:
`from claimkit.lm import sample` names the module claimkit.lm.sample, while
`from claimkit.lm import load_model` names the package claimkit.lm (its __init__).
The parent packages that Python runs first are not counted as dependencies: a package
that re-exports its modules would otherwise close a cycle with each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import claimkit

SOURCE_ROOT = Path(claimkit.__file__).resolve().parent  # the claimkit under test, not another install


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> its file, for every .py file of the package at `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package's modules that `name` imports anywhere in its source -> the first line naming each."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            named = [_nearest(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..lm import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            named = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _nearest(base, modules)
                     for alias in node.names]  # fmt: skip
        else:
            continue
        for target in named:
            if target is not None and target != name:
                found.setdefault(target, node.lineno)
    return found


def _nearest(dotted: str, modules: dict[str, Path]) -> str | None:
    """`dotted` if it is one of the modules, else its nearest enclosing one that is (None outside the package)."""
    parts = dotted.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(root: Path) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = module_files(root)
    return {name: imports(name, path, modules) for name, path in modules.items()}, modules


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(component: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    """Each import inside a cycle, as file:line -> module, so the message says what to move."""
    lines = [f"import cycle among {', '.join(component)}:"]
    for source in component:
        for target, line in sorted(graph[source].items()):
            if target in component:
                where = modules[source].relative_to(SOURCE_ROOT.parent)
                lines.append(f"  {where}:{line} imports {target}")
    return "\n".join(lines)


# -- the rules -------------------------------------------------------------------------


def test_no_claimkit_modules_import_each_other():
    graph, modules = import_graph(SOURCE_ROOT)
    found = cycles(graph)
    assert not found, (
        "\n".join(describe(c, graph, modules) for c in found)
        + "\nMove what both modules need into a module below both (see STYLE.md, 'Imports go one way')."
    )


def test_lm_never_imports_the_organism():
    """The organism is pretrained through lm's profiles and formats; lm loads it only through a builder it is given."""
    graph, modules = import_graph(SOURCE_ROOT)
    reaching = sorted(
        f"{modules[source].relative_to(SOURCE_ROOT.parent)}:{line} imports {target}"
        for source, targets in graph.items()
        if source == "claimkit.lm" or source.startswith("claimkit.lm.")
        for target, line in targets.items()
        if target == "claimkit.organism" or target.startswith("claimkit.organism.")
    )
    assert not reaching, "claimkit.lm must not import claimkit.organism:\n  " + "\n  ".join(reaching)


# -- the reader itself, on packages made for it -----------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in {"__init__.py": "", **files}.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text, encoding="utf-8")
    return package


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = write_package(tmp_path, {
        "a.py": "from pkg.b import helper\n",
        "b.py": "def helper():\n    from pkg.a import thing\n    return thing\n",
        "c.py": "import pkg.a\n",
    })  # fmt: skip
    graph, _ = import_graph(package)
    assert graph["pkg.b"] == {"pkg.a": 2}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_type_checking_and_relative_imports_count_and_parent_packages_do_not(tmp_path):
    package = write_package(tmp_path, {
        "sub/__init__.py": "from pkg.sub.x import X\n",
        "sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..y import Y\nX = 1\n",
        "y.py": "from pkg.sub import x\nfrom pkg import sub\nY = 2\n",
    })  # fmt: skip
    graph, _ = import_graph(package)
    assert graph["pkg.sub.x"] == {"pkg.y": 3}  # the relative import under TYPE_CHECKING; not its parent pkg.sub
    assert graph["pkg.y"] == {"pkg.sub.x": 1, "pkg.sub": 2}  # a module, and a package by name
    assert cycles(graph) == [["pkg.sub", "pkg.sub.x", "pkg.y"]]


def test_a_package_without_cycles_passes(tmp_path):
    package = write_package(tmp_path, {"low.py": "import json\n", "high.py": "from pkg.low import *\nimport pkg.low\n"})
    graph, _ = import_graph(package)
    assert graph["pkg.high"] == {"pkg.low": 1} and cycles(graph) == []
