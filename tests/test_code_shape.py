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


# Below the stores: no connector, no driver, no web framework. The pure ones also do no I/O (no
# file, no environment): config reads the environment and .env, so it is below but not pure.
PURE = ["changes", "clock", "errors", "etags", "json_text", "merge", "openapi", "records", "seeding", "sequences",
        "shaping", "times"]
BELOW_THE_STORES = [*PURE, "config"]
LAYERS_ABOVE = ("server.connectors", "server.sync", "server.api", "server.routes", "server.sync_routes",
                "server.http", "server.cli", "flask", "pymongo", "sqlite3")
INPUT_OUTPUT = ("os", "pathlib", "io", "shutil", "socket", "dotenv", "subprocess")


def _imports(tree: ast.AST) -> set[str]:
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_the_modules_below_the_stores_import_no_connector_no_driver_and_no_web_framework():
    found = {}
    for name in BELOW_THE_STORES:
        bad = sorted(m for m in _imports(ast.parse((ROOT / "server" / f"{name}.py").read_text()))
                     if m.startswith(LAYERS_ABOVE))
        if bad:
            found[name] = bad
    assert found == {}


def test_the_pure_modules_open_no_file_and_read_no_environment():
    found = {}
    for name in PURE:
        tree = ast.parse((ROOT / "server" / f"{name}.py").read_text())
        bad = sorted(m for m in _imports(tree) if m.split(".")[0] in INPUT_OUTPUT)
        bad += [f"{n.func.id}() at line {n.lineno}" for n in ast.walk(tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("open", "input")]
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


def _self_names(cls: type) -> tuple[set[str], set[str]]:
    """(names read as `self.x`, names assigned as `self.x = ...`) in the methods `cls` itself
    defines."""
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    read, assigned = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            (assigned if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    return read, assigned


def _server_classes() -> list[type]:
    import importlib
    import inspect

    classes = []
    for path in ROOT.glob("server/**/*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        module = importlib.import_module(name)
        classes += [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == name]
    return classes


def test_every_attribute_a_class_uses_is_declared_in_it_or_a_base():
    """No mixin leans on a sibling's attributes: what a method reads of `self` is defined,
    annotated or assigned by its own class or one of its bases (Storage declares what the shared
    operations use of a store)."""
    undeclared = {}
    classes = _server_classes()
    for cls in classes:
        read, _ = _self_names(cls)
        declared: set[str] = set()
        for base in cls.__mro__:
            declared |= set(vars(base)) | set(getattr(base, "__annotations__", {}))
            if base.__module__ != "builtins":  # a library's base too (waitress's task sets its attributes)
                declared |= _self_names(base)[1]
        missing = read - declared - set(dir(cls))
        if missing:
            undeclared[f"{cls.__module__}.{cls.__qualname__}"] = sorted(missing)
    assert len(classes) > 40 and undeclared == {}


# Underscored names that are a library's public API: namedtuple's _replace, werkzeug's proxies,
# os._exit.
LIBRARY_UNDERSCORES = {"_replace", "_get_current_object", "_exit"}


def test_no_module_reaches_into_another_objects_private_attributes():
    """A connector's, a service's or a client's underscored attributes are its own: the code
    around it uses what it declares public (the registry takes a store's pool, the hub routes
    call `guarded`)."""
    found = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in LIBRARY_UNDERSCORES
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert found == []
