"""Every source the code cites resolves to an entry of docs/references.md (seed numbers, "Author et al. YEAR",
PyBaMM parameter-set names), so a reader can always get from a comment to the full reference."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("contract", "connectors", "ontology", "models", "simulator", "twin")
SEED = re.compile(r"\b[Ss]eeds? (0\d\d)\b")
ET_AL = re.compile(r"\b([A-Z][a-zA-Z-]+) et al\.?,? \(?((?:19|20)\d\d)\b")
PARAMETER_SET = re.compile(r"\b(Chen2020|Marquis2019|Mohtat2020|OKane2022|Ecker2015|Prada2013|ProZell|BatPaC)\b")
ENTRY = re.compile(r"^- \*\*([A-Za-z0-9-]+)\*\*", re.M)


def _keys() -> set[str]:
    text = (REPO / "docs" / "references.md").read_text(encoding="utf-8")
    keys = set(ENTRY.findall(text))
    keys |= set(re.findall(r"Also cited as `([A-Za-z0-9]+)`", text))
    return keys


def _citations() -> dict[str, set[str]]:
    """citation key -> files that cite it"""
    cited: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            rel = str(path.relative_to(REPO))
            for n in SEED.findall(text):
                cited.setdefault(f"seed-{n}", set()).add(rel)
            for author, year in ET_AL.findall(text):
                cited.setdefault(f"{author}{year}", set()).add(rel)
            for key in PARAMETER_SET.findall(text):
                cited.setdefault(key, set()).add(rel)
    return cited


def test_the_code_cites_sources() -> None:
    cited = _citations()
    assert {"seed-000", "seed-001", "seed-002", "Chen2020"} <= set(cited), sorted(cited)


def test_every_citation_resolves_to_a_reference() -> None:
    keys = _keys()
    missing = {k: sorted(files) for k, files in _citations().items() if k not in keys}
    assert not missing, f"add these to docs/references.md: {missing}"
