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


# The folders are the layers. Each may import its own folder and those it lists, nothing else of
# server/: the core is below everything, the web plumbing and the stores above it, the device's
# sync engine above the stores, and the two apps on top, neither importing the other. The root
# (api.py, __main__.py, console.py) composes them.
MAY_IMPORT = {
    "core": set(),
    "web": {"core"},
    "connectors": {"core"},
    "sync": {"core", "web", "connectors"},
    "device": {"core", "web", "connectors", "sync"},
    "hub": {"core", "web", "connectors"},
}
# Below the stores nothing imports a driver or a web framework; the core does no I/O but for
# config (it reads the environment and .env).
NO_FRAMEWORK = {"core": ("flask", "pymongo", "sqlite3", "werkzeug"), "web": ("pymongo", "sqlite3")}
INPUT_OUTPUT = ("os", "pathlib", "io", "shutil", "socket", "dotenv", "subprocess")
NOT_PURE = {"server/core/config.py"}


def _imports(tree: ast.AST) -> set[str]:
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else "root"


def test_every_module_of_server_is_in_a_folder_of_its_role():
    loose = sorted(p.name for p in (ROOT / "server").glob("*.py"))
    folders = sorted(p.name for p in (ROOT / "server").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert loose == ["__init__.py", "__main__.py", "api.py", "console.py"]
    assert folders == sorted(MAY_IMPORT)


def test_each_folder_imports_only_the_folders_below_it():
    found = {}
    for module, deps in _server_imports().items():
        folder = _folder(module)
        if folder == "root":
            continue
        bad = sorted(d for d in deps if _folder(d) not in {folder, *MAY_IMPORT[folder]})
        if bad:
            found[module] = bad
    assert found == {}


def test_below_the_stores_no_driver_and_no_web_framework():
    found = {}
    for folder, banned in NO_FRAMEWORK.items():
        for path in (ROOT / "server" / folder).glob("*.py"):
            bad = sorted(m for m in _imports(ast.parse(path.read_text())) if m.split(".")[0] in banned)
            if bad:
                found[str(path.relative_to(ROOT))] = bad
    assert found == {}


def test_the_core_opens_no_file_and_reads_no_environment():
    found = {}
    for path in (ROOT / "server" / "core").glob("*.py"):
        if str(path.relative_to(ROOT)) in NOT_PURE:
            continue
        tree = ast.parse(path.read_text())
        bad = sorted(m for m in _imports(tree) if m.split(".")[0] in INPUT_OUTPUT)
        bad += [f"{n.func.id}() at line {n.lineno}" for n in ast.walk(tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("open", "input")]
        if bad:
            found[str(path.relative_to(ROOT))] = bad
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


BACKENDS = ("server.connectors.sqlite", "server.connectors.mongo")
DRIVERS = ("sqlite3", "pymongo", "bson", "mongomock")


def test_only_the_factory_knows_the_backends():
    """Outside its own folder a backend is imported by connectors/factory.py alone: stores,
    registries and watchers are built there, and everything else sees them by their contract."""
    found = {}
    for module, deps in _server_imports().items():
        if module == "server.connectors.factory" or module.startswith(BACKENDS):
            continue
        bad = sorted(d for d in deps if d.startswith(BACKENDS))
        if bad:
            found[module] = bad
    assert len(_server_imports()) > 40 and found == {}


def test_only_the_backend_folders_speak_to_a_driver():
    """sqlite3 and pymongo are imported in server/ only by the folder of their backend (the seeders,
    the benches and the tests may use them; the server's other code may not)."""
    found = {}
    for path in ROOT.glob("server/**/*.py"):
        where = str(path.relative_to(ROOT))
        mine = {"server/connectors/sqlite/": ("sqlite3",), "server/connectors/mongo/": ("pymongo", "bson")}
        allowed = next((drivers for folder, drivers in mine.items() if where.startswith(folder)), ())
        bad = sorted(m for m in _imports(ast.parse(path.read_text()))
                     if m.split(".")[0] in DRIVERS and m.split(".")[0] not in allowed)
        if bad:
            found[where] = bad
    assert found == {}
