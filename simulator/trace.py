"""Trace IDs and trace events exactly as the traceability contract (docs/traceability.md, contract/) prescribes
(``pilotline.trace.v1``).

The schema name, the entity types and the kinds come from the contract package (``contract.trace``), the one place
that states the format (tests/ontology/test_simulator_record.py places every event of a real run through its parser).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.trace import KINDS, SCHEMA, TYPES

__all__ = ["SCHEMA", "TYPES", "IdCounter", "TraceLog", "inp", "iso", "lane_letter"]


def iso(t: datetime) -> str:
    """UTC with microseconds and a Z, as in the contract's example."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class IdCounter:
    """Numbers per prefix, from 1; the formats are the ID patterns of docs/traceability.md."""

    counts: dict[str, int] = field(default_factory=dict)

    def next(self, prefix: str) -> int:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return self.counts[prefix]


def lane_letter(lane: str) -> str:
    return "C" if lane == "Cathode" else "A"


def inp(id_: str, type_: str, from_m: float | None = None, to_m: float | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": id_, "type": type_}
    if from_m is not None and to_m is not None:
        item["from_m"] = round(float(from_m), 4)
        item["to_m"] = round(float(to_m), 4)
    return item


class TraceLog:
    """Numbers events per line (``seq`` contiguous from 1) and hands them to the publishers in order."""

    def __init__(self, line: str, clock: Callable[[], datetime]) -> None:
        self.line = line
        self.clock = clock
        self.seq = 0
        self.pending: list[dict[str, Any]] = []

    def emit(
        self,
        kind: str,
        id_: str,
        type_: str,
        step: str,
        station: str,
        equipment: str,
        start_s: float | None = None,
        inputs: list[dict[str, Any]] | None = None,
        parameters: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        assert kind in KINDS, kind
        assert type_ in TYPES, type_
        now = self.clock()
        start = now if start_s is None else now - timedelta(seconds=max(0.0, start_s))
        self.seq += 1
        event = {
            "schema": SCHEMA,
            "seq": self.seq,
            "line": self.line,
            "time": iso(now),
            "kind": kind,
            "id": id_,
            "type": type_,
            "step": step,
            "station": station,
            "equipment": equipment,
            "start": iso(start),
            "end": iso(now),
            "inputs": inputs or [],
            "parameters": _clean(parameters or {}),
            "properties": _clean(properties or {}),
        }
        self.pending.append(event)
        return event

    def drain(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Round floats so events are readable and identical across platforms' last-bit differences."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float):
            out[k] = round(v, 6) if math.isfinite(v) else None
        else:
            out[k] = v
    return out
