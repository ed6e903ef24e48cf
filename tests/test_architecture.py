"""The module boundaries of docs/architecture.md, checked on the source with `ast`.

- No import cycle between modules of `mpimarl/`. Every import counts: at the top of a module, inside
  a function (a lazy import only hides a cycle) and under `if TYPE_CHECKING:` (a type is a
  dependency too; a lower module states what it needs as a `Protocol`).
- No module uses another module's private names: no `from mpimarl.x import _name`, no
  `module._name` through an imported module, and no call `obj._method(...)` on another object
  (not `self`, `cls` or `super()`) of a method that only another module defines. Helpers two
  modules need move into a module both import.

Not checked: reads and writes of another object's private *data* attributes (`trainer._returns`);
`mpimarl/roles/resume.py` still saves and restores the trainers' private counters that way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mpimarl"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is a package `__init__`) for every module under `root`."""
    return {_module_name(p, root): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
            for p in sorted(root.rglob("*.py"))}


def _imports(module: str, is_package: bool, tree: ast.AST, modules: Mapping[str, object]
             ) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of a package module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # `from pkg import module`
                    yield sub, None, node.lineno
                else:
                    yield base, alias.name, node.lineno


def _owner(target: str, modules: Mapping[str, object]) -> str | None:
    """The package module `target` (a dotted name) lives in, or None outside the package."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, (source, is_package) in sources.items():
        for target, _name, _line in _imports(module, is_package, ast.parse(source), sources):
            owner = _owner(target, sources)
            if owner is not None and owner != module:
                graph[module].add(owner)
    return graph


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
    return found


def _defined_functions(tree: ast.AST) -> set[str]:
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def private_uses(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    """Every use of another module's private name, as 'module:line: what'."""
    trees = {m: ast.parse(src) for m, (src, _) in sources.items()}
    functions = {m: _defined_functions(t) for m, t in trees.items()}
    found: list[str] = []
    for module, tree in trees.items():
        is_package = sources[module][1]
        module_aliases: dict[str, str] = {}
        for target, name, line in _imports(module, is_package, tree, sources):
            owner = _owner(target, sources)
            if owner is None or owner == module:
                continue
            if name is not None and _is_private(name):
                found.append(f"{module}:{line}: imports {name} from {owner}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in sources:
                        module_aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in sources:
                        module_aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in module_aliases and module_aliases[value.id] != module:
                found.append(f"{module}:{node.lineno}: uses {module_aliases[value.id]}.{node.attr}")
                continue
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                continue
            if node.attr in functions[module]:
                continue
            owners = sorted(m for m, names in functions.items() if m != module and node.attr in names)
            if owners:
                found.append(f"{module}:{node.lineno}: calls {ast.unparse(node)}, private to {', '.join(owners)}")
    return found


# ---------------------------------------------------------------------------------- tests --


def test_no_import_cycle_inside_mpimarl() -> None:
    cycles = import_cycles(import_graph(package_sources()))
    assert not cycles, "import cycles (each list is a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_module_uses_another_modules_private_names() -> None:
    uses = sorted(private_uses(package_sources()))
    assert not uses, "private names used across modules:\n" + "\n".join(uses)


def test_the_checks_find_what_they_look_for() -> None:
    """The checkers on a made-up package: each kind of violation is found, allowed uses are not."""
    sources = {
        "mpimarl": ("", True),
        "mpimarl.a": ("from mpimarl.b import helper\n", False),
        "mpimarl.b": ("def helper():\n    from mpimarl.c import thing\n", False),
        "mpimarl.c": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mpimarl.a import X\n"
                      "thing = 1\n", False),
        "mpimarl.d": ("def _secret():\n    pass\nclass Server:\n    def _policy(self):\n        return self._x\n",
                      False),
        "mpimarl.e": ("from mpimarl.d import _secret\nfrom mpimarl import d\n"
                      "def f(server):\n    server._policy()\n    d._secret()\n    self._own()\n"
                      "    super()._policy()\n    return server._data\n", False),
    }
    assert import_cycles(import_graph(sources)) == [["mpimarl.a", "mpimarl.b", "mpimarl.c"]]
    assert sorted(private_uses(sources)) == [
        "mpimarl.e:1: imports _secret from mpimarl.d",
        "mpimarl.e:4: calls server._policy, private to mpimarl.d",
        "mpimarl.e:5: uses mpimarl.d._secret",
    ]
