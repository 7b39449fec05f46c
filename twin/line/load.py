"""Read a line description: YAML -> ``LineDescription``, with errors that name the key and the line in the file.

Why line numbers: a description is written by hand from a vendor's address space and grows to hundreds of lines;
``sources.opcua.1.signals.14.station: ...`` alone sends the engineer counting list items. Nothing starts
half-configured: any error stops the load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from twin.line.description import LineDescription


class LineDescriptionError(ValueError):
    """The description cannot be used; the message lists every problem with its key and line."""


def _positions(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            _positions(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _positions(v, (*path, i), out)


def _line_of(loc: tuple[Any, ...], positions: dict[tuple[Any, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        hit = positions.get(tuple(loc[:n]))
        if hit is not None:
            return hit
    return None


def parse_line(text: str, origin: str = "<text>") -> LineDescription:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LineDescriptionError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LineDescriptionError(f"{origin}: a line description is a mapping (schema:, line:, sources: ...)")
    positions: dict[tuple[Any, ...], int] = {}
    if root is not None:
        _positions(root, (), positions)
    try:
        return LineDescription.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
            where = ".".join(str(x) for x in loc) or "<top>"
            line = _line_of(loc, positions)
            problems.append(f"{origin}:{line}: {where}: {e['msg']}" if line else f"{origin}: {where}: {e['msg']}")
        raise LineDescriptionError("invalid line description:\n  " + "\n  ".join(problems)) from None


def load_line(path: str | Path) -> LineDescription:
    p = Path(path)
    if not p.is_file():
        raise LineDescriptionError(f"line description {p} does not exist (see deploy/lines/sample.yaml)")
    return parse_line(p.read_text(), str(p))
