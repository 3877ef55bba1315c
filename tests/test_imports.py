"""The package's import structure: every module imports on its own, and the import graph has no cycle.

A module that only imports after another one has been imported, or that reaches back up the graph
(also lazily, inside a function), breaks as soon as someone imports it first or moves an import. The
top-level ``valuelex/__init__.py`` is the public facade: it may import anything, and no module of the
package imports it (``import valuelex``, ``from valuelex import __version__``), so that the facade can
grow without creating cycles. Private names (``_x``) stay inside the module that owns them.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "valuelex"
FACADE = PACKAGE


def module_files() -> dict[str, Path]:
    """Every module of the package (subpackages included) -> its file, found on disk (importing nothing)."""
    modules: dict[str, Path] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        elif not (path.parent / "__init__.py").exists():
            continue  # a script in a data folder, not a module
        if all(part.isidentifier() for part in parts):
            modules[".".join(parts)] = path
    return modules


# --- every module imports on its own --------------------------------------------------------------

_IMPORT_EACH = textwrap.dedent("""
    import importlib, json, sys, traceback

    failures, started, heavy = {}, [], {}
    for name in json.loads(sys.argv[1]):
        for loaded in [m for m in sys.modules if m == "valuelex" or m.startswith("valuelex.")]:
            del sys.modules[loaded]
        before = {m for m in ("vllm", "torch") if m in sys.modules}
        try:
            importlib.import_module(name)
        except BaseException as exc:
            failures[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        for engine in ("vllm", "torch"):
            if engine in sys.modules and engine not in before:
                heavy[name] = engine
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            started.append(f"{name}: Ray was started on import")
            ray.shutdown()
    print(json.dumps({"failures": failures, "started": started, "heavy": heavy}))
""")


def test_every_module_imports_on_its_own() -> None:
    """Each module imports in an interpreter holding no other valuelex module (one subprocess, for speed).

    Importing starts nothing: no Ray, and no engine library (vLLM, torch) is loaded.
    """
    names = sorted(module_files())
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    problems = [f"{name}: {why}" for name, why in result["failures"].items()] + result["started"]
    assert not problems, "modules that do not import on their own:\n" + "\n".join(problems)
    # vLLM and torch take tens of seconds to import: only the code that runs an engine or a model loads them
    assert not result["heavy"], f"modules importing an engine library at import time: {result['heavy']}"


# --- the static import graph ----------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import statement of a package module: what it names, resolved to a module of the package."""

    source: str  # the importing module
    target: str  # the imported module (``valuelex.x.y`` when that is a module, else ``valuelex.x``)
    line: int
    names: tuple[str, ...]  # the names of a ``from ... import`` (empty for ``import x``)
    type_checking: bool  # inside ``if TYPE_CHECKING:`` (annotations only: no runtime edge)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Every import of a module, at module level and inside functions, marking ``if TYPE_CHECKING:`` ones."""

    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.module, self.modules = module, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._type_checking = 0

    def _add(self, target: str, line: int, names: tuple[str, ...] = ()) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            while target not in self.modules and "." in target:  # valuelex.x.Name -> valuelex.x
                target = target.rpartition(".")[0]
            self.found.append(Import(self.module, target, line, names, self._type_checking > 0))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.modules:
                self._add(submodule, node.lineno, (alias.name,))
            else:
                self._add(base, node.lineno, (alias.name,))

    def visit_Call(self, node: ast.Call) -> None:
        """``importlib.import_module("valuelex.x")`` with a literal name is an import too."""
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node.lineno)
        self.generic_visit(node)


def imports() -> list[Import]:
    """Every import of a package module by a package module (self-imports left out)."""
    files = module_files()
    found: list[Import] = []
    for module, path in files.items():
        collector = _Collector(module, path.name == "__init__.py", set(files))
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found += [i for i in collector.found if i.target != module]
    return found


def _where(edge: Import) -> str:
    return f"{module_files()[edge.source].relative_to(ROOT)}:{edge.line}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a directed graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the first module of a component, as a chain that ends where it starts."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return [*paths[node], start]
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    following.append(child)
        frontier = following
    return component


def test_import_graph_has_no_cycle() -> None:
    """No module reaches itself through imports (runtime ones: ``if TYPE_CHECKING:`` imports left out)."""
    edges = [i for i in imports() if not i.type_checking and FACADE not in (i.source, i.target)]
    graph: dict[str, set[str]] = {m: set() for m in module_files() if m != FACADE}
    first: dict[tuple[str, str], Import] = {}
    for edge in edges:
        graph[edge.source].add(edge.target)
        first.setdefault((edge.source, edge.target), edge)
    chains = []
    for component in strongly_connected(graph):
        if len(component) > 1:
            chain = _cycle(component, graph)
            steps = [f"{a} ({_where(first[(a, b)])})" for a, b in itertools.pairwise(chain)]
            chains.append(" -> ".join([*steps, chain[-1]]) + (f"   [cycle of {len(component)} modules: "
                                                              f"{', '.join(component)}]" if len(component) > 2
                                                              else ""))
    assert not chains, "import cycles:\n" + "\n".join(chains)


def test_no_module_imports_the_facade() -> None:
    """``valuelex/__init__.py`` is for users: a module that imports it makes the facade part of every cycle."""
    offending = [f"{_where(i)}: {i.source} imports {FACADE}" + (f" ({', '.join(i.names)})" if i.names else "")
                 for i in imports() if i.target == FACADE and i.source != FACADE]
    assert not offending, "import the module that owns the name instead:\n" + "\n".join(offending)


def test_no_module_imports_another_modules_private_names() -> None:
    """A ``_name`` is its module's own; share it by making it public in one place both import."""
    offending = [f"{_where(i)}: {i.source} imports {name} from {i.target}" for i in imports()
                 for name in i.names if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
                 and f"{i.target}.{name}" not in module_files()]
    assert not offending, "private names imported across modules:\n" + "\n".join(offending)


def test_the_graph_finds_what_it_should() -> None:
    """The collector sees function-level imports, marks TYPE_CHECKING ones, resolves ``from a import b``."""
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        import valuelex.store
        from valuelex.report import tables
        from valuelex.report.load import RunData
        from . import figures
        from .html import render
        if TYPE_CHECKING:
            from valuelex.spec import Study
        def later():
            from valuelex.construct.taxonomy import parse_taxonomy
            importlib.import_module("valuelex.engines.vllm")
    """)
    modules = {"valuelex.store", "valuelex.report.tables", "valuelex.report.load", "valuelex.report.figures",
               "valuelex.report.html", "valuelex.spec", "valuelex.construct.taxonomy", "valuelex.engines.vllm",
               "valuelex.report.here"}
    collector = _Collector("valuelex.report.here", False, modules)
    collector.visit(ast.parse(source))
    assert [(i.target, i.type_checking) for i in collector.found] == [
        ("valuelex.store", False), ("valuelex.report.tables", False), ("valuelex.report.load", False),
        ("valuelex.report.figures", False), ("valuelex.report.html", False), ("valuelex.spec", True),
        ("valuelex.construct.taxonomy", False), ("valuelex.engines.vllm", False)]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"]]
    assert _cycle(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
