"""The import rule of DESIGN.md: twin -> connectors, ontology, models; simulator -> models; nothing else crosses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "connectors", "ontology", "models", "simulator")
ALLOWED: dict[str, set[str]] = {
    "twin": {"connectors", "ontology", "models"},
    "simulator": {"models"},
    "connectors": set(),
    "ontology": set(),
    "models": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_design(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        crossing = (_imports(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        if crossing:
            offenders.append(f"{path.relative_to(REPO)} imports {sorted(crossing)}")
    assert not offenders, "imports that cross the design's boundaries:\n" + "\n".join(offenders)
