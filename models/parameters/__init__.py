"""Named, cited parameter sets kept as data (PyBaMM's habit): one YAML file per set, every value with its source.

Why data and not code: a reader checks a number against its paper without reading Python, a new set (another
cathode, another line's calibration) is a file, and ``tests/models/test_parameters.py`` checks that every ``source``
resolves to an entry of docs/references.md and that the cell model really uses the values the file states.

File format (``models/parameters/<name>.yaml``)::

    name: ProZell_seed001
    description: ...
    base: Chen2020            # optional: the PyBaMM set the functions (OCPs, electrolyte, kinetics) come from
    values:
      cathode_thickness_m: {value: 4.85e-5, unit: m, source: seed-001, where: Table A2, pybamm: "Positive ..."}

``source`` is a citation key of docs/references.md (``seed-001``, ``Chen2020``, ``Bruggeman1935`` ...) or
``assumption`` (then ``note`` must say why the value was chosen). ``where`` locates it (table, equation); ``pybamm``
names the PyBaMM parameter the value sets, when it sets one directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DIRECTORY = Path(__file__).resolve().parent
ASSUMPTION = "assumption"


@dataclass(frozen=True)
class Value:
    """One number with its unit and where it comes from."""

    value: float
    unit: str
    source: str
    where: str = ""
    note: str = ""
    pybamm: str = ""


@dataclass(frozen=True)
class ParameterSet:
    name: str
    description: str
    values: Mapping[str, Value]
    base: str = ""
    path: Path = field(default=DIRECTORY)

    def __getitem__(self, key: str) -> float:
        try:
            return self.values[key].value
        except KeyError:
            raise KeyError(f"parameter set {self.name!r} has no value {key!r}; it has {sorted(self.values)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def pybamm_updates(self) -> dict[str, float]:
        """{PyBaMM parameter name: value} for every value that sets a PyBaMM parameter directly."""
        return {v.pybamm: v.value for v in self.values.values() if v.pybamm}

    def sources(self) -> set[str]:
        return {v.source for v in self.values.values()}


def names() -> list[str]:
    return sorted(p.stem for p in DIRECTORY.glob("*.yaml"))


def _value(set_name: str, key: str, raw: Any) -> Value:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{set_name}: {key} must be a mapping with value, unit and source, got {raw!r}")
    missing = [k for k in ("value", "unit", "source") if k not in raw]
    if missing:
        raise ValueError(f"{set_name}: {key} is missing {missing}")
    unknown = sorted(set(raw) - {"value", "unit", "source", "where", "note", "pybamm"})
    if unknown:
        raise ValueError(f"{set_name}: {key} has unknown field(s) {unknown}")
    try:
        number = float(raw["value"])
    except (TypeError, ValueError):
        raise ValueError(f"{set_name}: {key} value {raw['value']!r} is not a number") from None
    if raw["source"] == ASSUMPTION and not str(raw.get("note", "")).strip():
        raise ValueError(f"{set_name}: {key} is an assumption without a note saying why")
    return Value(number, str(raw["unit"]), str(raw["source"]), str(raw.get("where", "")), str(raw.get("note", "")),
                 str(raw.get("pybamm", "")))


def load(name: str, directory: Path = DIRECTORY) -> ParameterSet:
    """The parameter set ``name`` (file stem, case-insensitive); unknown names list the ones that exist."""
    candidates = {p.stem.lower(): p for p in directory.glob("*.yaml")}
    path = candidates.get(name.lower())
    if path is None:
        raise KeyError(f"unknown parameter set {name!r}; available: {sorted(p.stem for p in candidates.values())}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, Mapping) or not isinstance(raw.get("values"), Mapping):
        raise ValueError(f"{path}: expected a mapping with 'name', 'description' and 'values'")
    values = {str(k): _value(path.stem, str(k), v) for k, v in raw["values"].items()}
    return ParameterSet(str(raw.get("name", path.stem)), str(raw.get("description", "")), values,
                        str(raw.get("base", "")), path)
