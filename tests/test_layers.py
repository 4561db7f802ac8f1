"""The layers import downwards only, and each package's face lists what it exports."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What each layer may import from the project's own packages.
ALLOWED = {
    "vareon_runtime": {"vareon_runtime"},
    "drivers": {"vareon_runtime", "drivers"},
    "actors": {"vareon_runtime", "drivers", "actors"},
    "web": {"vareon_runtime", "drivers", "actors", "web"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down_the_layers(layer: str) -> None:
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        bad = (_imports(path) & set(ALLOWED)) - ALLOWED[layer]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, f"{layer} may import only {sorted(ALLOWED[layer])}:\n" + "\n".join(offenders)


FACES = [
    "vareon_runtime",
    "vareon_runtime.store",
    "vareon_runtime.bench",
    "vareon_runtime.auth",
    "vareon_runtime.config",
    "drivers",
    "actors.kit",
    "actors.myntrix.agents",
    "actors.myntrix.devices",
    "actors.myntrix.metrics",
    "actors.myntrix.scheduler",
    "actors.myntrix.scheduler.actions",
    "actors.myntrix.visualization",
    "web",
]


@pytest.mark.parametrize("package", FACES)
def test_package_face_lists_every_public_name(package: str) -> None:
    module = importlib.import_module(package)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(module)) and name != "annotations"
    }
    assert public <= set(module.__all__), f"{package}.__all__ misses {sorted(public - set(module.__all__))}"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported: its top level, and the blocks there
    (``try``, ``if``) but those under ``if TYPE_CHECKING:``; not those inside functions."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports when it is imported."""
    files = {_module_name(path): path for layer in ALLOWED for path in (ROOT / layer).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            edges.update(target for target in targets if target in files and target != name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_module_level_imports() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, "modules that import each other when imported:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_finding_the_components_imports_no_web_stack() -> None:
    # `vareon init`, `vareon user` and the store's search for migrations load every component;
    # the HTTP stack must load only for a runtime that serves.
    code = (
        "import sys\n"
        "from vareon_runtime.store.migrate import version_locations\n"
        "version_locations()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'quart', 'quart_schema', 'hypercorn', 'werkzeug'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
