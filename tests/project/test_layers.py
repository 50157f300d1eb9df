"""The package's layers, kept by a test: what each part may import, and no import circle.

ARCHITECTURE.md states the rules in words; this test reads every module's imports with
``ast`` (``TYPE_CHECKING`` imports included: a type named from a higher layer is still a
climb) and fails, naming the import, when a part reaches up or two modules import each
other through any path.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stripe_checkout_mw

PACKAGE = Path(stripe_checkout_mw.__file__).parent
NAME = "stripe_checkout_mw"

#: Each part and the parts it must never import. Parts are top-level modules or folders.
FORBIDDEN: dict[str, frozenset[str]] = {
    "errors": frozenset({"*"}),
    "urls": frozenset({"*"}),
    "marker": frozenset({"*"}),
    "schema": frozenset({"*"}),
    "observe": frozenset({"wsgi", "cli", "shop", "settings", "checkout", "news", "billing",
                          "testing"}),
    "stripe_api": frozenset({"wsgi", "cli", "shop", "settings", "checkout", "news", "billing",
                             "ledger", "testing"}),
    "ledger": frozenset({"wsgi", "cli", "shop", "settings", "checkout", "news", "billing",
                         "testing"}),
    # The deciders may name Settings as a type (they are handed it); only the shop, the
    # edge and the command line build it.
    "checkout": frozenset({"wsgi", "cli", "shop", "news", "billing", "testing"}),
    "news": frozenset({"wsgi", "cli", "shop", "checkout", "testing"}),
    "billing": frozenset({"wsgi", "cli", "shop", "testing"}),
    "settings": frozenset({"wsgi", "cli", "shop", "testing"}),
    "shop": frozenset({"wsgi", "cli", "testing"}),
    "wsgi": frozenset({"cli", "testing"}),
    "testing": frozenset({"wsgi", "cli", "shop", "settings", "checkout", "news", "billing",
                          "ledger", "stripe_api", "observe", "errors", "urls", "marker"}),
}
#: What a part with "*" may still import: nothing of the package but these.
BOTTOM_MAY_IMPORT = {"schema": frozenset({"schema"}), "errors": frozenset(),
                     "urls": frozenset(), "marker": frozenset()}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_only_nodes(tree: ast.Module) -> set[int]:
    """The ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


def _imports(path: Path, *, types: bool = True) -> set[str]:
    """The package modules ``path`` imports, as absolute dotted names (with ``types``
    false, without those imported only for type checking)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set() if types else _type_only_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(NAME))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith(NAME):
                continue
            for alias in node.names:  # "from . import schema" imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph(*, types: bool = True) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        graph[_module_name(path)] = _imports(path, types=types)
    return graph


def test_no_part_imports_a_layer_above_it() -> None:
    climbs = []
    for module, imported in _graph().items():
        part = _part(module)
        forbidden = FORBIDDEN.get(part, frozenset())
        for target in imported:
            other = _part(target)
            if other in ("", part):
                continue
            if "*" in forbidden:
                if other not in BOTTOM_MAY_IMPORT.get(part, frozenset()):
                    climbs.append(f"{module} -> {target}")
            elif other in forbidden:
                climbs.append(f"{module} -> {target}")
    assert not climbs, "imports that climb a layer:\n" + "\n".join(sorted(climbs))


def test_no_import_circle() -> None:
    """No module needs, at run time, a module that needs it back (through any path).

    Imports made only for type checking are left out: two modules that name each other's
    types in annotations are not a circle Python has to resolve, and the layer test above
    still counts them."""
    graph = _graph(types=False)
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                circles.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checks_see_the_imports() -> None:
    """The reader is not blind: it finds imports this test knows are there."""
    graph = _graph()
    assert f"{NAME}.ledger.store" in graph[f"{NAME}.ledger.pipeline"]
    assert any(t.startswith(f"{NAME}.wsgi") for t in graph[NAME])
