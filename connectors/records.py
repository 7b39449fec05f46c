"""The two records that cross every boundary: ``Sample`` (one measured value) and ``TraceEvent`` (genealogy).

One record type from the wire to the database and to every consumer (Telegraf's lesson): connectors produce them,
validation checks them, the spool persists them, the store writes them, the twin reads them. They are frozen
dataclasses with slots because ingest builds tens of thousands per second and pydantic would cost a multiple of that.
``Sample.to_json`` / ``Sample.from_json`` and ``TraceEvent.to_json`` / ``TraceEvent.from_json`` are the only codecs;
``from_json`` raises ``RecordError`` (a ``ValueError``) with a message that names the offending field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

Quality = Literal["good", "uncertain", "bad"]
QUALITIES: Final[frozenset[str]] = frozenset(get_args(Quality))

Value = float | int | bool | str
TraceValue = str | float

#: Every traceability ID (README, traceability section).
ID_PATTERN: Final[re.Pattern[str]] = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
ID_MAX_LEN: Final[int] = 64

#: Keys of ``Sample.trace``. Values are IDs (str) except ``roll_position_m`` (float, metres from the roll start).
TRACE_KEYS: Final[tuple[str, ...]] = (
    "slurry_batch_id",  # SB-C-000001, current at Mixing / Coating
    "roll_id",  # CR-C-000001 / CAL-C-000001 / SC-C-000001-1, the roll or coil the station works on
    "roll_position_m",  # position on that roll, m
    "source_roll_id",  # the roll a station consumes while making roll_id (Calendering: CR-* while making CAL-*)
    "segment_id",  # SEG-C-000001-003
    "sheet_id",  # ES-C-000001
    "stack_id",  # STK-000001
    "cell_id",  # CELL-000001
    "formation_run_id",  # FR-000001
    "channel",  # cycler channel CH-01
    "seq",  # the source's message sequence number (MQTT cycler messages: contiguous per channel)
)

TRACE_EVENT_SCHEMA: Final[str] = "pilotline.trace.v1"
TraceKind = Literal["created", "consumed", "processed"]
TRACE_KINDS: Final[frozenset[str]] = frozenset(get_args(TraceKind))
TRACE_TYPES: Final[frozenset[str]] = frozenset(
    {
        "RawMaterialLot", "SlurryBatch", "CoatedRoll", "RollSegment", "CalenderedRoll", "SlitCoil",
        "ElectrodeSheet", "CellStack", "Cell", "FormationRun",
    }
)


class RecordError(ValueError):
    """A payload cannot become a record; the message names the field and what was expected."""


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and len(value) <= ID_MAX_LEN and ID_PATTERN.fullmatch(value) is not None


# ---------------------------------------------------------------------------------------------------------------
# time helpers: UTC, nanoseconds; JSON carries RFC 3339 with microseconds and a Z (the README's trace-event format)
# ---------------------------------------------------------------------------------------------------------------


def ns_to_iso(time_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds trimmed to what is set (``...T10:00:00.000000123Z`` keeps the 123)."""
    secs, frac = divmod(time_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac % 1000 == 0:
        return f"{base}.{frac // 1000:06d}Z"
    return f"{base}.{frac:09d}Z"


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")


def iso_to_ns(text: str) -> int:
    """Parse RFC 3339 (``Z`` or an offset; no offset means UTC) to integer ns without float rounding."""
    m = _ISO.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise RecordError(f"time {text!r} is not RFC 3339 (expected e.g. 2026-11-21T10:00:00.000000Z)")
    date, clock, frac, tz = m.groups()
    tzs = "+00:00" if tz in (None, "Z") else tz
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}{tzs}")
    except ValueError as exc:
        raise RecordError(f"time {text!r}: {exc}") from None
    return int(dt.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def _ns_from_json(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise RecordError(f"{what}: expected an RFC 3339 string or integer ns, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return iso_to_ns(value)
    raise RecordError(f"{what}: expected an RFC 3339 string or integer ns, got {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------------------
# Sample
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured value with everything needed to store and trace it.

    ``station`` is the ISA-95 path below the line as in trace events: ``Coating/Cathode``, ``DryRoom``,
    ``Formation/CH-01``. ``signal`` is the item name (``WetFilmThickness``). ``unit`` is a UCUM code (``um``,
    ``cm3/h``, ``Cel``, ``V``). ``quality`` comes from the OPC UA status code (or the payload's own flag); a bad
    value is kept and stored as bad, never dropped. ``trace`` holds the IDs current at ``time_ns`` (keys in
    ``TRACE_KEYS``). ``received_ns`` is when the connector got it (for latency; not stored as a field).
    ``tags`` are extra low-cardinality tags from configuration (Telegraf's ``default_tags``).
    """

    time_ns: int
    line: str
    station: str
    signal: str
    value: Value
    unit: str = ""
    quality: Quality = "good"
    source: str = ""
    trace: Mapping[str, TraceValue] = field(default_factory=dict)
    received_ns: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "time_ns": self.time_ns, "line": self.line, "station": self.station, "signal": self.signal,
            "value": self.value, "unit": self.unit, "quality": self.quality, "source": self.source,
            "trace": dict(self.trace),
        }
        if self.tags:
            d["tags"] = dict(self.tags)
        if self.received_ns:
            d["received_ns"] = self.received_ns
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sample:
        """Strict: types are checked, NaN is allowed here (validation decides what to do with it)."""
        if not isinstance(d, Mapping):
            raise RecordError(f"sample must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("time_ns", "line", "station", "signal", "value") if k not in d]
        if missing:
            raise RecordError(f"sample lacks required field(s) {missing}")
        time_ns = d["time_ns"]
        if isinstance(time_ns, bool) or not isinstance(time_ns, int):
            raise RecordError(f"time_ns must be an integer (ns since 1970 UTC), got {time_ns!r}")
        for k in ("line", "station", "signal", "unit", "source"):
            if k in d and not isinstance(d[k], str):
                raise RecordError(f"{k} must be a string, got {type(d[k]).__name__}")
        value = d["value"]
        if not isinstance(value, float | int | bool | str):
            raise RecordError(f"value must be a number, boolean or string, got {type(value).__name__}")
        quality = d.get("quality", "good")
        if quality not in QUALITIES:
            raise RecordError(f"quality must be one of {sorted(QUALITIES)}, got {quality!r}")
        trace = d.get("trace", {}) or {}
        if not isinstance(trace, Mapping):
            raise RecordError("trace must be an object of ID name -> ID")
        for k, v in trace.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, str | int | float):
                raise RecordError(f"trace[{k!r}] must be a string ID or a number, got {v!r}")
        received = d.get("received_ns", 0)
        if isinstance(received, bool) or not isinstance(received, int):
            raise RecordError("received_ns must be an integer")
        tags = d.get("tags", {}) or {}
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise RecordError("tags must be an object of string -> string")
        return cls(
            time_ns=time_ns, line=d["line"], station=d["station"], signal=d["signal"], value=value,
            unit=d.get("unit", ""), quality=quality, source=d.get("source", ""), trace=dict(trace),
            received_ns=received, tags=dict(tags),
        )

    @property
    def is_finite_number(self) -> bool:
        v = self.value
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------------------------
# TraceEvent
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceInput:
    """An input of a trace event; ``from_m`` / ``to_m`` bound the stretch used when only part of it was."""

    id: str
    type: str
    from_m: float | None = None
    to_m: float | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.from_m is not None:
            d["from_m"] = self.from_m
        if self.to_m is not None:
            d["to_m"] = self.to_m
        return d


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """A material or product came into being, was consumed or was processed (README, traceability section).

    Times are integer ns UTC (``time_ns``, ``start_ns``, ``end_ns``); JSON carries RFC 3339 strings.
    """

    seq: int
    line: str
    time_ns: int
    kind: TraceKind
    id: str
    type: str
    step: str
    station: str
    equipment: str = ""
    start_ns: int | None = None
    end_ns: int | None = None
    inputs: tuple[TraceInput, ...] = ()
    parameters: Mapping[str, float | int | str | bool | None] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    schema: str = TRACE_EVENT_SCHEMA

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": self.schema, "seq": self.seq, "line": self.line, "time": ns_to_iso(self.time_ns),
            "kind": self.kind, "id": self.id, "type": self.type, "step": self.step, "station": self.station,
            "equipment": self.equipment,
        }
        if self.start_ns is not None:
            d["start"] = ns_to_iso(self.start_ns)
        if self.end_ns is not None:
            d["end"] = ns_to_iso(self.end_ns)
        d["inputs"] = [i.to_json() for i in self.inputs]
        d["parameters"] = dict(self.parameters)
        d["properties"] = dict(self.properties)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TraceEvent:
        """Validate a ``pilotline.trace.v1`` object; every problem names its field."""
        if not isinstance(d, Mapping):
            raise RecordError(f"trace event must be a JSON object, got {type(d).__name__}")
        schema = d.get("schema", TRACE_EVENT_SCHEMA)
        if schema != TRACE_EVENT_SCHEMA:
            raise RecordError(f"schema must be {TRACE_EVENT_SCHEMA!r}, got {schema!r}")
        missing = [k for k in ("seq", "line", "time", "kind", "id", "type", "step", "station") if k not in d]
        if missing:
            raise RecordError(f"trace event lacks required field(s) {missing}")
        seq = d["seq"]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise RecordError(f"seq must be an integer >= 1, got {seq!r}")
        for k in ("line", "kind", "id", "type", "step", "station", "equipment"):
            if k in d and not isinstance(d[k], str):
                raise RecordError(f"{k} must be a string, got {type(d[k]).__name__}")
        if d["kind"] not in TRACE_KINDS:
            raise RecordError(f"kind must be one of {sorted(TRACE_KINDS)}, got {d['kind']!r}")
        if d["type"] not in TRACE_TYPES:
            raise RecordError(f"type must be one of {sorted(TRACE_TYPES)}, got {d['type']!r}")
        if not is_valid_id(d["id"]):
            raise RecordError(f"id {d['id']!r} does not match {ID_PATTERN.pattern} (max {ID_MAX_LEN} chars)")
        raw_inputs = d.get("inputs", []) or []
        if not isinstance(raw_inputs, list):
            raise RecordError("inputs must be a list of {id, type, from_m?, to_m?}")
        inputs: list[TraceInput] = []
        for n, i in enumerate(raw_inputs):
            if not isinstance(i, Mapping) or "id" not in i or "type" not in i:
                raise RecordError(f"inputs[{n}] must be an object with id and type")
            if not is_valid_id(i["id"]):
                raise RecordError(f"inputs[{n}].id {i['id']!r} does not match {ID_PATTERN.pattern}")
            if i["type"] not in TRACE_TYPES:
                raise RecordError(f"inputs[{n}].type must be one of {sorted(TRACE_TYPES)}, got {i['type']!r}")
            bounds: list[float | None] = []
            for k in ("from_m", "to_m"):
                v = i.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)):
                    raise RecordError(f"inputs[{n}].{k} must be a finite number of metres, got {v!r}")
                bounds.append(None if v is None else float(v))
            if bounds[0] is not None and bounds[1] is not None and bounds[1] < bounds[0]:
                raise RecordError(f"inputs[{n}]: to_m {bounds[1]} is before from_m {bounds[0]}")
            inputs.append(TraceInput(i["id"], i["type"], bounds[0], bounds[1]))
        params = d.get("parameters", {}) or {}
        if not isinstance(params, Mapping):
            raise RecordError("parameters must be an object of name -> number")
        for k, v in params.items():
            if v is not None and not isinstance(v, int | float | str):
                raise RecordError(f"parameters[{k!r}] must be a number, string, boolean or null, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise RecordError(f"parameters[{k!r}] must be finite, got {v!r}")
        props = d.get("properties", {}) or {}
        if not isinstance(props, Mapping):
            raise RecordError("properties must be an object")
        start = None if d.get("start") is None else _ns_from_json(d["start"], "start")
        end = None if d.get("end") is None else _ns_from_json(d["end"], "end")
        return cls(
            seq=seq, line=d["line"], time_ns=_ns_from_json(d["time"], "time"), kind=d["kind"], id=d["id"],
            type=d["type"], step=d["step"], station=d["station"], equipment=d.get("equipment", "") or "",
            start_ns=start, end_ns=end, inputs=tuple(inputs), parameters=dict(params), properties=dict(props),
            schema=schema,
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that could not become a valid record: it goes to the quarantine with its reason and raw payload.

    ``reason`` is a short machine key (``malformed_json``, ``schema``, ``nan``, ``out_of_range``, ``unit``,
    ``trace_id``, ``type`` ...) so counts per reason are meaningful; ``detail`` is the human explanation.
    """

    reason: str
    detail: str
    source: str
    raw: bytes | str
    time_ns: int
    sample: Sample | None = None


Record = Sample | TraceEvent
