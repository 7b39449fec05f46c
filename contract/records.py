"""The records that cross every boundary: ``Sample`` (one measured value) and ``TraceEvent`` (genealogy).

One record type from the wire to the database and to every consumer (Telegraf's lesson): connectors produce them,
validation checks them, the spool persists them, the store writes them, the twin and the genealogy read them. They are
frozen dataclasses with slots because ingest builds tens of thousands per second and pydantic would cost a multiple of
that. ``Sample.to_json`` / ``Sample.from_json`` and ``TraceEvent.to_json`` / ``TraceEvent.from_json`` are the only
codecs; ``from_json`` raises ``RecordError`` (a ``ValueError``) with a message that names the offending field.
``TraceEvent.from_json`` is ``contract.trace.parse_trace_event``: the one strict parser of ``pilotline.trace.v1``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
#: A parameter or property value of a trace event (numbers are finite; null in the JSON means "not available" and
#: leaves the key out of the record).
EventValue = float | int | bool | str


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

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _ns_to_datetime(time_ns: int) -> datetime:
    """Exact to the microsecond (a datetime holds no more); no float rounding on the way."""
    return _EPOCH + timedelta(microseconds=time_ns // 1000)


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

    Times are integer ns UTC (``time_ns``, ``start_ns``, ``end_ns``); JSON carries RFC 3339 strings, and ``time`` /
    ``start`` / ``end`` give them as aware datetimes (to the microsecond) for consumers that want those.
    ``equipment`` is None when the event names none (absent, null and ``""`` in the JSON all mean that).
    ``parameters`` / ``properties`` hold finite numbers, booleans and strings; a null in the JSON ("not available")
    is left out. Build one with ``TraceEvent.from_json``: the constructor checks nothing.
    """

    seq: int
    line: str
    time_ns: int
    kind: TraceKind
    id: str
    type: str
    step: str
    station: str
    equipment: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    inputs: tuple[TraceInput, ...] = ()
    parameters: Mapping[str, EventValue] = field(default_factory=dict)
    properties: Mapping[str, EventValue] = field(default_factory=dict)
    schema: str = TRACE_EVENT_SCHEMA

    @property
    def time(self) -> datetime:
        return _ns_to_datetime(self.time_ns)

    @property
    def start(self) -> datetime | None:
        return None if self.start_ns is None else _ns_to_datetime(self.start_ns)

    @property
    def end(self) -> datetime | None:
        return None if self.end_ns is None else _ns_to_datetime(self.end_ns)

    def to_json(self) -> dict[str, Any]:
        """The ``pilotline.trace.v1`` object; ``from_json(to_json(e)) == e`` for every parsed event."""
        d: dict[str, Any] = {
            "schema": self.schema, "seq": self.seq, "line": self.line, "time": ns_to_iso(self.time_ns),
            "kind": self.kind, "id": self.id, "type": self.type, "step": self.step, "station": self.station,
        }
        if self.equipment is not None:
            d["equipment"] = self.equipment
        if self.start_ns is not None:
            d["start"] = ns_to_iso(self.start_ns)
        if self.end_ns is not None:
            d["end"] = ns_to_iso(self.end_ns)
        d["inputs"] = [i.to_json() for i in self.inputs]
        d["parameters"] = dict(self.parameters)
        d["properties"] = dict(self.properties)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | bytes | str) -> TraceEvent:
        """Check a ``pilotline.trace.v1`` object (or its JSON text) and return it typed.

        The one parser (``contract.trace.parse_trace_event``); raises ``TraceEventError`` (a ``RecordError``)
        whose message names the field and says what was expected.
        """
        # contract.trace builds TraceEvents, so it imports this module: it is imported here, when first used
        from contract.trace import parse_trace_event

        return parse_trace_event(d)


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
