"""The layers import downwards only, and each package's face lists what it exports."""

from __future__ import annotations

import ast
import importlib
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


@pytest.mark.parametrize("package", ["vareon_runtime", "vareon_runtime.store", "vareon_runtime.bench", "vareon_runtime.auth", "actors.myntrix.devices", "actors.myntrix.scheduler"])
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
