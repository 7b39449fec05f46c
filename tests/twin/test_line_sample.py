"""The commented sample line description (deploy/lines/sample.yaml) is generated from ``LineDescription``: the
committed file is current, it loads as a line description of all defaults, and it names every key, down to the
fields of list items and dict values."""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel

from twin.line.description import LineDescription
from twin.line.load import load_line, parse_line
from twin.sample_configs import LINE_SAMPLE, line_sample

REPO = Path(__file__).resolve().parents[2]


def test_committed_sample_is_what_the_model_generates() -> None:
    assert LINE_SAMPLE == REPO / "deploy" / "lines" / "sample.yaml"
    assert LINE_SAMPLE.read_text(encoding="utf-8") == line_sample(), "regenerate with: python -m twin.sample_configs"


def test_sample_loads_as_the_defaults() -> None:
    text = LINE_SAMPLE.read_text(encoding="utf-8")
    desc = parse_line(text, str(LINE_SAMPLE))
    assert desc == load_line(LINE_SAMPLE)
    assert desc == LineDescription.model_validate({"schema": "pilotline.line.v1"})


def _models(annotation: typing.Any) -> list[type[BaseModel]]:
    """The models inside ``annotation``: ``Model``, ``Model | None``, ``list[Model]``, ``dict[str, Model]``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, dict) or isinstance(annotation, types.UnionType):
        return [m for a in args for m in _models(a)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def test_sample_names_every_key() -> None:
    """Every field of every model a description is made of is in the sample, as a value (``key:``) or as an item
    field's comment (``key (default ...)``, ``key (required...)``, ``key: ...`` for a nested section)."""
    text = line_sample()
    missing: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, f in model.model_fields.items():
            key = f.alias or name
            if not any(f"{key}{end}" in text for end in (": ", ":\n", " (")):
                missing.append(f"{model.__name__}.{key}")
            for m in _models(f.annotation):
                walk(m)

    walk(LineDescription)
    assert len(seen) > 10, "the walk reaches the item models (units, sources, trace, products ...)"
    assert not missing, missing
