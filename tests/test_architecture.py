"""The house rules of docs/ARCHITECTURE.md, checked on the source: which room may import which, and no import cycles
(imports inside functions count; an `if TYPE_CHECKING:` block does not, since it never runs)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("engine", "analysis", "app", "lab")
FORBIDDEN = {  # room -> top-level packages it must never import
    "engine": {"app", "analysis", "lab", "tests", "gradio", "plotly"},
    "analysis": {"app", "lab", "tests", "gradio"},
    "app": {"lab", "tests"},
    "lab": {"tests"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Absolute names of every module imported anywhere in the file, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


SOURCES = {module_name(p): p for room in ROOMS for p in sorted((ROOT / room).rglob("*.py"))}
IMPORTS = {name: runtime_imports(path) for name, path in SOURCES.items()}


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_it_may(room):
    bad = sorted(f"{name} imports {imported}" for name, imported_set in IMPORTS.items() if name.split(".")[0] == room
                 for imported in imported_set if imported.split(".")[0] in FORBIDDEN[room])
    assert not bad, "\n".join(bad)


def test_nothing_imports_tests():
    importers = sorted(name for name, found in IMPORTS.items() if any(i.split(".")[0] == "tests" for i in found))
    assert not importers


def test_no_import_cycles_between_project_modules():
    graph = {name: {i for i in found if i in SOURCES and i != name} for name, found in IMPORTS.items()}
    for name in graph:  # a package's __init__ is not an edge back into its own children
        graph[name] = {i for i in graph[name] if not name.startswith(i + ".")}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node}->{nxt}")
            elif state.get(nxt) is None:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [])
    assert not cycles, "\n".join(cycles)
