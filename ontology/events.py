"""Parse and check one trace event (README traceability section, schema pilotline.trace.v1).

The genealogy consumes trace events as plain dicts so that it depends on no other project package; this module is
the only place that knows their shape. Every rejection names the field and says what was expected, because the reason
ends up in the quarantine where an engineer reads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

SCHEMA: Final = "pilotline.trace.v1"
ID_PATTERN: Final = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
ID_MAX_LEN: Final = 64
LINE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
KEY_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
KINDS: Final = ("created", "consumed", "processed")
# README traceability table: the ID prefix each entity type must carry.
ID_PREFIX_BY_TYPE: Final[dict[str, str]] = {
    "RawMaterialLot": "LOT-",
    "SlurryBatch": "SB-",
    "CoatedRoll": "CR-",
    "RollSegment": "SEG-",
    "CalenderedRoll": "CAL-",
    "SlitCoil": "SC-",
    "ElectrodeSheet": "ES-",
    "CellStack": "STK-",
    "Cell": "CELL-",
    "FormationRun": "FR-",
}
TYPES: Final = tuple(ID_PREFIX_BY_TYPE)
MAX_TEXT: Final = 128


class EventError(ValueError):
    """A trace event (or prediction / audit) that cannot be placed; the message is the quarantine reason."""


@dataclass(frozen=True)
class Input:
    id: str
    type: str
    from_m: float | None = None
    to_m: float | None = None


@dataclass(frozen=True)
class TraceEvent:
    seq: int
    line: str
    time: datetime
    kind: str
    id: str
    type: str
    step: str | None
    station: str | None
    equipment: str | None
    start: datetime | None
    end: datetime | None
    inputs: tuple[Input, ...] = ()
    parameters: dict[str, float | str | bool] = field(default_factory=dict)
    properties: dict[str, float | str | bool] = field(default_factory=dict)


def parse_time(value: Any, name: str) -> datetime:
    """ISO 8601 with a zone (Z or +hh:mm) -> aware UTC datetime; naive times are refused (README: UTC everywhere)."""
    if not isinstance(value, str) or not value:
        raise EventError(f"'{name}' must be an ISO 8601 UTC time string like 2026-11-21T10:00:00Z, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepted at most 6 fractional digits; trim nanoseconds so the parse is exact to the microsecond.
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:
        text = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EventError(f"'{name}' is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise EventError(f"'{name}' has no time zone; send UTC with a trailing Z: {value!r}")
    return parsed.astimezone(timezone.utc)


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > ID_MAX_LEN or not ID_PATTERN.match(value):
        raise EventError(
            f"'{name}' must match {ID_PATTERN.pattern} (at most {ID_MAX_LEN} characters), got {value!r}"
        )
    return value


def _check_type(value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in ID_PREFIX_BY_TYPE:
        raise EventError(f"'{name}' must be one of {', '.join(TYPES)}, got {value!r}")
    return str(value)


def _check_prefix(entity_id: str, entity_type: str, name: str) -> None:
    prefix = ID_PREFIX_BY_TYPE[entity_type]
    if not entity_id.startswith(prefix):
        raise EventError(f"'{name}' {entity_id!r} is a {entity_type}, whose IDs start with {prefix!r}")


def _check_text(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise EventError(f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or not value.isprintable():
        raise EventError(f"'{name}' must be a printable string of 1..{MAX_TEXT} characters, got {value!r}")
    return value


def check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"'{name}' must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise EventError(f"'{name}' must be finite, got {value!r}")
    return number


def _check_values(value: Any, name: str) -> dict[str, float | str | bool]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(f"'{name}' must be an object of name -> number, got {type(value).__name__}")
    out: dict[str, float | str | bool] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise EventError(f"'{name}' key {key!r} must match {KEY_PATTERN.pattern}")
        if item is None:
            continue  # "not available" (the simulator writes non-finite readings as null): nothing to store
        if isinstance(item, bool):
            out[key] = item
        elif isinstance(item, str):
            out[key] = _check_text(item, f"{name}.{key}") or ""
        else:
            out[key] = check_number(item, f"{name}.{key}")
    return out


def _check_inputs(value: Any) -> tuple[Input, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise EventError(f"'inputs' must be a list, got {type(value).__name__}")
    out: list[Input] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise EventError(f"'inputs[{i}]' must be an object with id and type")
        input_id = check_id(item.get("id"), f"inputs[{i}].id")
        input_type = _check_type(item.get("type"), f"inputs[{i}].type")
        _check_prefix(input_id, input_type, f"inputs[{i}].id")
        from_m, to_m = item.get("from_m"), item.get("to_m")
        if (from_m is None) != (to_m is None):
            raise EventError(f"'inputs[{i}]' gives only one of from_m / to_m; give both or neither")
        if from_m is not None:
            from_m = check_number(from_m, f"inputs[{i}].from_m")
            to_m = check_number(to_m, f"inputs[{i}].to_m")
            if from_m < 0 or to_m <= from_m:
                raise EventError(f"'inputs[{i}]' needs 0 <= from_m < to_m, got {from_m}..{to_m}")
        out.append(Input(input_id, input_type, from_m, to_m))
    return tuple(out)


def parse_event(raw: Any) -> TraceEvent:
    """Check a trace-event dict against the README contract and return it typed; raise EventError saying why not."""
    if not isinstance(raw, Mapping):
        raise EventError(f"a trace event must be a JSON object, got {type(raw).__name__}")
    if raw.get("schema") != SCHEMA:
        raise EventError(f"'schema' must be {SCHEMA!r}, got {raw.get('schema')!r}")
    seq = raw.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise EventError(f"'seq' must be an integer >= 1, got {seq!r}")
    line = raw.get("line")
    if not isinstance(line, str) or not LINE_PATTERN.match(line):
        raise EventError(f"'line' must match {LINE_PATTERN.pattern}, got {line!r}")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise EventError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    entity_id = check_id(raw.get("id"), "id")
    entity_type = _check_type(raw.get("type"), "type")
    _check_prefix(entity_id, entity_type, "id")
    time = parse_time(raw.get("time"), "time")
    start = parse_time(raw["start"], "start") if raw.get("start") is not None else None
    end = parse_time(raw["end"], "end") if raw.get("end") is not None else None
    if start and end and end < start:
        raise EventError(f"'end' ({raw['end']}) is before 'start' ({raw['start']})")
    inputs = _check_inputs(raw.get("inputs"))
    if any(i.id == entity_id for i in inputs) and kind == "created":
        raise EventError(f"'{entity_id}' cannot be created from itself")
    return TraceEvent(
        seq=seq,
        line=line,
        time=time,
        kind=str(kind),
        id=entity_id,
        type=entity_type,
        step=_check_text(raw.get("step"), "step"),
        station=_check_text(raw.get("station"), "station"),
        equipment=_check_text(raw.get("equipment"), "equipment"),
        start=start,
        end=end,
        inputs=inputs,
        parameters=_check_values(raw.get("parameters"), "parameters"),
        properties=_check_values(raw.get("properties"), "properties"),
    )
