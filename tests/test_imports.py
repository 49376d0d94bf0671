"""Imports flow one way between mlxgw's parts: no cycle between its folders and top-level modules.

Every module of the package is parsed (ast, so imports inside functions count too, and nothing is
executed); each subpackage of mlxgw is one node (mlxgw.server, mlxgw.backends...) and each top-level
module is one (mlxgw.errors...). An edge A -> B is any import in A of something in B. A cycle in that graph
means two parts that cannot be understood, or tested, one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlxgw

ROOT = Path(mlxgw.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("mlxgw", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _node(module: str) -> str | None:
    """The part of mlxgw a dotted module name belongs to: `mlxgw.<first component>`; None outside mlxgw
    and for the package's own __init__."""
    parts = module.split(".")
    if parts[0] != "mlxgw" or len(parts) < 2:
        return None
    return f"mlxgw.{parts[1]}"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, relative ones resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from mlxgw import server` names a part through the package itself.
            out.extend((f"{mod}.{a.name}" if mod == "mlxgw" else mod, node.lineno) for a in node.names)
    return out


def import_graph() -> dict[str, dict[str, str]]:
    """part -> {imported part: "file:line" of the first such import}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = _node(_module_name(path))
        if src is None:
            continue
        edges = graph.setdefault(src, {})
        for mod, line in _imports(path):
            dst = _node(mod)
            if dst is not None and dst != src:
                edges.setdefault(dst, f"{path.relative_to(ROOT.parent)}:{line}")
    return graph


def tangles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one part (Tarjan): parts that import one another,
    directly or around a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def _cycle_in(comp: list[str], graph: dict[str, dict[str, str]]) -> list[str]:
    """One closed path inside a strongly connected component, from its first part back to it."""
    members = set(comp)
    start = comp[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to `start`
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w == start:
                    return paths[v] + [start]
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return comp


def _explain(comp: list[str], graph: dict[str, dict[str, str]]) -> str:
    """A cycle through the tangle, then every import between its parts (each with the first file:line
    that makes it), since breaking one cycle may leave another."""
    cycle = _cycle_in(comp, graph)
    edges = [f"  {a} -> {b}   ({graph[a][b]})" for a in comp for b in sorted(graph.get(a, {})) if b in comp]
    return f"cycle {' -> '.join(cycle)}; imports between these parts:\n" + "\n".join(edges)


def test_the_graph_sees_the_package():
    graph = import_graph()
    # The walk found the parts and the edges everyone knows are there, so an empty cycle list means something.
    assert {"mlxgw.server", "mlxgw.routing", "mlxgw.supervisor", "mlxgw.config", "mlxgw.store"} <= set(graph)
    assert "mlxgw.routing" in graph["mlxgw.server"]


def test_a_cycle_is_found_and_explained():
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2"}, "c": {"a": "c.py:3"}, "d": {"a": "d.py:4"}}
    assert tangles(graph) == [["a", "b", "c"]]
    text = _explain(["a", "b", "c"], graph)
    assert text.startswith("cycle a -> b -> c -> a;") and "c -> a   (c.py:3)" in text and "d ->" not in text
    assert tangles({"a": {"b": "x"}, "b": {}}) == []


def test_no_import_cycle_between_parts():
    graph = import_graph()
    found = tangles(graph)
    report = "\n\n".join(_explain(comp, graph) for comp in found)
    assert not found, f"imports between mlxgw's parts go both ways:\n\n{report}"
