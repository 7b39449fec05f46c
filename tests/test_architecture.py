"""The import rule of DESIGN.md: twin -> connectors, ontology, models; simulator -> models; every package may import
the contract package at the bottom (records, the one trace-event parser, its JSON Schema), which imports none of them;
nothing else crosses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "connectors", "ontology", "models", "simulator", "contract")
BOTTOM = "contract"
ALLOWED: dict[str, set[str]] = {
    "twin": {"connectors", "ontology", "models", BOTTOM},
    "simulator": {"models", BOTTOM},
    "connectors": {BOTTOM},
    "ontology": {BOTTOM},
    "models": {BOTTOM},
    BOTTOM: set(),
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


def test_the_contract_is_at_the_bottom() -> None:
    """Everyone may import the contract and it imports no project package: the format has one owner, no cycle."""
    assert ALLOWED[BOTTOM] == set() and all(BOTTOM in ALLOWED[p] for p in PACKAGES if p != BOTTOM)
    assert any((REPO / BOTTOM).rglob("*.py")), "the contract package is missing"
    project = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()} | set(PACKAGES)
    used = set().union(*(_imports(path) for path in (REPO / BOTTOM).rglob("*.py")))
    assert not (used & project) - {BOTTOM}, f"contract imports {sorted((used & project) - {BOTTOM})}"
