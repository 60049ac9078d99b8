"""mnn's own imports form a tree: no cycle, and two arrows that the design forbids.

The graph is read from the source with ``ast``, never by importing, so an import inside
a function (which runs only when the function is called) counts as much as one at the
top of a file. Every module under ``mnn/`` is a node, and so is every module under
``backends/``, under its installed name ``mnn.backends``.

An import is an arrow from the importing module to the module it names:

* ``import mnn.layers.linear`` and ``from mnn.layers import linear`` point at
  ``mnn.layers.linear``: a submodule is the module itself;
* ``from mnn.backends import Placement``, ``from mnn import __version__`` and
  ``import mnn`` point at the package, its ``__init__``: that is the code Python runs
  for them, and a package's ``__init__`` points at every module it re-exports from.
  A name that a package re-exports is not followed to the module that defines it,
  because Python does not follow it either: it runs the whole ``__init__``;
* importing a submodule also runs its parent packages' ``__init__`` first; that is no
  arrow, or every module would be in a cycle with ``mnn/__init__.py``, which imports
  nearly everything. So ``import mnn`` from a submodule is a cycle only where
  ``mnn/__init__.py`` really reaches that submodule;
* ``importlib.import_module("mnn.x")`` with a literal name is an import too.

Imports under ``if TYPE_CHECKING:`` run only for type checkers: they are no arrow of
the cycle check, but they do count for the two forbidden arrows, since those say what a
module may know of another, not only what it may run.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
#: Where each package of mnn lies in the repository.
SOURCES = {"mnn": ROOT / "mnn", "mnn.backends": ROOT / "backends"}


class Arrow(NamedTuple):
    source: str
    target: str
    where: str  # file:line of the import
    in_function: bool
    typing_only: bool

    def __str__(self) -> str:
        how = ", in a function" if self.in_function else ""
        how += ", for type checkers only" if self.typing_only else ""
        return f"{self.source} -> {self.target} ({self.where}{how})"


def module_files(sources: dict[str, Path]) -> dict[str, Path]:
    """Each module's dotted name and its file; a package is its ``__init__.py``."""
    files = {}
    for package, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if (folder / parts[0]).is_symlink():  # mnn/backends -> ../backends, read there
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join((package, *parts))] = path
    return files


class _Imports(ast.NodeVisitor):
    """Every import of a module, at any depth: (node, inside a function, for type checkers only)."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.AST, bool, bool]] = []
        self.in_function = False
        self.typing_only = False

    def visit_FunctionDef(self, node: ast.AST) -> None:
        outer, self.in_function = self.in_function, True
        self.generic_visit(node)
        self.in_function = outer

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            outer, self.typing_only = self.typing_only, True
            for statement in node.body:
                self.visit(statement)
            self.typing_only = outer
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.AST) -> None:
        self.found.append((node, self.in_function, self.typing_only))

    visit_ImportFrom = visit_Import

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", None)
        if (name in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            self.found.append((node, self.in_function, self.typing_only))
        self.generic_visit(node)


def _named(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``import name`` runs last: the longest prefix of ``name`` that is one
    of mnn's modules (``mnn.layers.linear.LinearLayer`` is not a module), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def _targets(module: str, node: ast.AST, modules: dict[str, Path]) -> list[str]:
    """The modules of mnn that one import statement (or call) of ``module`` points at."""
    if isinstance(node, ast.Import):
        return [target for alias in node.names if (target := _named(alias.name, modules))]
    if isinstance(node, ast.Call):
        target = _named(node.args[0].value, modules)
        return [target] if target else []
    if node.level:  # relative: from the importing module's package, one level up per dot
        package = module.split(".")
        if modules[module].name != "__init__.py":
            package = package[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module
    targets = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        target = submodule if submodule in modules else _named(base, modules)
        if target:
            targets.append(target)
    return targets


def import_arrows(sources: dict[str, Path] = SOURCES) -> list[Arrow]:
    """Every arrow between mnn's own modules, one per imported name and line."""
    modules = module_files(sources)
    arrows = []
    for module, path in modules.items():
        imports = _Imports()
        imports.visit(ast.parse(path.read_text(), filename=str(path)))
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for node, in_function, typing_only in imports.found:
            for target in _targets(module, node, modules):
                if target != module:
                    arrows.append(Arrow(module, target, f"{where}:{node.lineno}", in_function,
                                        typing_only))
    return arrows


def _shortest_path(graph: dict[str, dict[str, Arrow]], start: str, goal: str,
                   allowed: set[str]) -> list[Arrow]:
    """The arrows of a shortest path from ``start`` to ``goal`` through ``allowed`` (BFS)."""
    came: dict[str, Arrow | None] = {start: None}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here == goal:
            break
        for there, arrow in graph.get(here, {}).items():
            if there in allowed and there not in came:
                came[there] = arrow
                queue.append(there)
    path = []
    while (arrow := came[goal]) is not None:
        path.append(arrow)
        goal = arrow.source
    return path[::-1]


def _strongly_connected(graph: dict[str, dict[str, Arrow]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for there in graph.get(node, {}):
            if there not in index:
                visit(there)
                low[node] = min(low[node], low[there])
            elif there in stack:
                low[node] = min(low[node], index[there])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles(arrows: list[Arrow]) -> list[list[Arrow]]:
    """Cycles among the arrows: for every arrow that lies on a cycle, a shortest cycle
    through it (so that each arrow to remove is named), without repeats."""
    graph: dict[str, dict[str, Arrow]] = {}
    for arrow in arrows:
        graph.setdefault(arrow.source, {}).setdefault(arrow.target, arrow)
    found, seen = [], set()
    for component in _strongly_connected(graph):
        for source in sorted(component):
            for target, arrow in sorted(graph[source].items()):
                if target not in component:
                    continue
                cycle = [arrow, *_shortest_path(graph, target, source, component)]
                nodes = [step.source for step in cycle]
                first = nodes.index(min(nodes))
                key = tuple(nodes[first:] + nodes[:first])
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
    return found


def describe(cycle: list[Arrow]) -> str:
    return "\n".join(["  " + " -> ".join([step.source for step in cycle] + [cycle[0].source]),
                      *(f"      {step}" for step in cycle)])


# --- the checks -------------------------------------------------------------------------------

def test_mnns_imports_have_no_cycle():
    found = cycles([arrow for arrow in import_arrows() if not arrow.typing_only])
    assert not found, (f"{len(found)} import cycles among mnn's modules (each arrow on a cycle "
                       f"is on one of these):\n" + "\n".join(describe(c) for c in found))


def _base_layer_module() -> str:
    """The module that defines ``class BaseLayer``."""
    defining = [module for module, path in module_files(SOURCES).items()
                if any(isinstance(node, ast.ClassDef) and node.name == "BaseLayer"
                       for node in ast.parse(path.read_text()).body)]
    assert len(defining) == 1, f"expected one module to define BaseLayer, found {defining}"
    return defining[0]


def test_the_layer_base_imports_nothing_from_optim():
    """Layers accumulate gradients and know nothing of optimizers (issue 15)."""
    base = _base_layer_module()
    wrong = [str(arrow) for arrow in import_arrows() if arrow.source == base
             and (arrow.target == "mnn.optim" or arrow.target.startswith("mnn.optim."))]
    assert not wrong, f"{base} imports from mnn.optim:\n  " + "\n  ".join(wrong)


def test_backend_and_registry_do_not_import_each_other():
    """The registry knows the protocol (it registers only ``Backend`` instances); the protocol
    knows nothing of the registry, not even to pickle an adapter by name."""
    wrong = [str(arrow) for arrow in import_arrows() if arrow.source == "mnn.backends.backend"
             and arrow.target == "mnn.backends.registry"]
    assert not wrong, "the Backend protocol imports the registry:\n  " + "\n  ".join(wrong)


# --- the graph itself, on a package written for the test --------------------------------------

def test_the_graph_sees_every_kind_of_import(tmp_path):
    """Imports in functions and under TYPE_CHECKING, relative ones, submodules named in a
    from-import, literal import_module calls, and a cycle through a package __init__."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.a import A\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n"
                "class A:\n    def f(self):\n        from . import b\n",
        "b.py": "import importlib\nfrom pkg.sub import c\n"
                "def g():\n    return importlib.import_module('pkg.sub.c')\n",
        "sub/__init__.py": "",
        "sub/c.py": "import numpy\nfrom .. import A\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    arrows = {(a.source, a.target, a.in_function, a.typing_only)
              for a in import_arrows({"pkg": package})}
    assert arrows == {
        ("pkg", "pkg.a", False, False),
        ("pkg.a", "pkg.b", False, True),
        ("pkg.a", "pkg.b", True, False),
        ("pkg.b", "pkg.sub.c", False, False),
        ("pkg.b", "pkg.sub.c", True, False),
        ("pkg.sub.c", "pkg", False, False),
    }
    found = cycles([a for a in import_arrows({"pkg": package}) if not a.typing_only])
    assert [[step.source for step in cycle] for cycle in found] == [
        ["pkg", "pkg.a", "pkg.b", "pkg.sub.c"]]
