"""One direction of imports: no two amtcli modules import each other, at module level or
inside a function (batching/inference and hub/registry once did)."""

from __future__ import annotations

import ast
from pathlib import Path

import amtcli


def import_graph() -> dict[str, set[str]]:
    """Module name -> the amtcli modules it imports anywhere in its source."""
    root = Path(amtcli.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("amtcli"):
                targets = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                targets = {alias.name for alias in node.names}
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_two_modules_import_each_other():
    graph = import_graph()
    assert "amtcli.inference" in graph["amtcli.batching"]        # the graph sees real imports
    mutual = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])
    assert mutual == []
