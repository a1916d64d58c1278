"""The shape the code keeps: no module over 400 lines, no function over 50 (complexity is
ruff's C901, max 12, in the lint step)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = sorted([*ROOT.glob("server/**/*.py"), ROOT / "seed.py", ROOT / "seed_mongo.py"])
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 50


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in CODE if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES}
    assert len(CODE) > 20 and long == {}


def test_no_function_is_over_50_lines():
    long = {}
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert long == {}


PURE = ["changes", "clock", "config", "errors", "merge", "openapi", "records", "seeding", "sequences", "shaping"]
LAYERS_ABOVE = ("server.connectors", "server.sync", "server.api", "server.routes", "server.sync_routes",
                "server.http", "server.cli", "flask", "pymongo", "sqlite3")


def test_the_pure_modules_import_no_connector_no_driver_and_no_web_framework():
    found = {}
    for name in PURE:
        tree = ast.parse((ROOT / "server" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = sorted(m for m in imported if m.startswith(LAYERS_ABOVE))
        if bad:
            found[name] = bad
    assert found == {}


def _server_imports() -> dict[str, set[str]]:
    """Each server module -> the server modules it imports, wherever in the file (a deferred
    import inside a function is still a dependency)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in ROOT.glob("server/**/*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {m for m in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if m in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        graph[name] = found - {name}
    return graph


def test_no_import_circle_among_the_server_modules():
    graph = _server_imports()
    circles = set()

    def visit(name: str, trail: list[str]) -> None:
        for dep in graph[name]:
            if dep in trail:
                circles.add(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif len(trail) < len(graph):
                visit(dep, trail + [dep])

    for start in sorted(graph):
        visit(start, [start])
    assert len(graph) > 40 and circles == set()
