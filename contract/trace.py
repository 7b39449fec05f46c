"""The one parser of trace events (``pilotline.trace.v1``): what ingest stores is exactly what the genealogy places.

Ingest (``connectors``) and the genealogy (``ontology``) used to parse trace events with two parsers that disagreed,
so ingest stored events the genealogy quarantined. Both now call ``parse_trace_event``; the simulator takes its type
list from here; ``schema/pilotline.trace.v1.json`` states the same rules as a JSON Schema (draft 2020-12), and
tests/contract/ checks that the schema and this parser give the same answer.

The rules (README, traceability section), decided once:

- The event is a JSON object with exactly the fields ``schema, seq, line, time, kind, id, type, step, station``
  (required) and ``equipment, start, end, inputs, parameters, properties`` (optional); any other field is refused,
  so a misspelt one (``equipement``) is not silently dropped. An optional field that is null counts as absent.
- ``schema`` is ``pilotline.trace.v1``. ``seq`` is an integer 1 .. 2**53 - 1 (a JSON number with no fraction; the
  largest integer every JSON reader holds exactly). Whether a seq is plausible for its line (a jump far ahead) is
  the consumer's business, not the format's.
- ``line`` matches ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$``: it becomes an MQTT topic level, an InfluxDB tag and a part
  of every genealogy IRI, so no spaces and no slashes.
- ``kind`` is ``created``, ``consumed`` or ``processed``; ``type`` is one of ``TYPES``.
- ``id`` (and every ``inputs[].id``) matches ``^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$``, at most 64 characters, and starts
  with the prefix of its type (``ID_PREFIX_BY_TYPE``: a ``CoatedRoll`` is ``CR-...``).
- ``time``, ``start``, ``end`` are RFC 3339 strings with a ``T``, 0 to 9 fraction digits and a zone (``Z`` or
  ``+hh:mm``); a time without a zone is refused (UTC everywhere: a guess would shift the genealogy by hours). Years
  1970 .. 2259 (InfluxDB's int64 nanoseconds end in 2262). The date must exist (no 30 February).
- ``step``, ``station``, ``equipment`` and string values are text: 1 .. 128 characters, no control characters (nor
  U+2028 / U+2029 or unpaired surrogates), no leading or trailing white space. ``step`` and ``station`` are
  required; ``equipment`` is optional and ``""`` means "none named" (the record holds None and writes no field).
- ``inputs`` is a list of at most 1000 objects ``{id, type, from_m?, to_m?}`` (no other fields). ``from_m`` and
  ``to_m`` come together or not at all (a stretch needs both ends); they are finite numbers of metres >= 0.
- ``parameters`` and ``properties`` are objects of at most 256 entries; keys match ``^[A-Za-z_][A-Za-z0-9_]{0,63}$``
  (they become IRI segments and unit-carrying names like ``web_speed_m_min``); values are finite numbers, booleans,
  text, or null ("not available": the key is left out of the record). Nested objects and lists are refused.

Rules a JSON Schema cannot state, checked here only: ``to_m`` > ``from_m``; ``end`` not before ``start``; a
``created`` event does not list its own ID as an input; a JSON text (bytes / str) is at most 1 MiB, has no NaN or
Infinity and no key twice in one object.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, cast, get_args

from contract.records import (
    ID_MAX_LEN,
    ID_PATTERN,
    TRACE_EVENT_SCHEMA,
    EventValue,
    RecordError,
    TraceEvent,
    TraceInput,
    TraceKind,
)

SCHEMA: Final = TRACE_EVENT_SCHEMA
SCHEMA_PATH: Final = Path(__file__).resolve().parent / "schema" / f"{TRACE_EVENT_SCHEMA}.json"
KINDS: Final[tuple[str, ...]] = get_args(TraceKind)
# README traceability table: the entity types and the ID prefix each must carry.
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
TYPES: Final[tuple[str, ...]] = tuple(ID_PREFIX_BY_TYPE)
REQUIRED: Final[tuple[str, ...]] = ("schema", "seq", "line", "time", "kind", "id", "type", "step", "station")
OPTIONAL: Final[tuple[str, ...]] = ("equipment", "start", "end", "inputs", "parameters", "properties")
INPUT_FIELDS: Final[tuple[str, ...]] = ("id", "type", "from_m", "to_m")

SEQ_MAX: Final = 2**53 - 1
LINE_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
KEY_PATTERN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
TEXT_MAX_LEN: Final = 128
_NOT_TEXT: Final = r"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
TEXT_PATTERN: Final = re.compile(rf"^[^\s{_NOT_TEXT}](?:[^{_NOT_TEXT}]*[^\s{_NOT_TEXT}])?$")
TIME_PATTERN: Final = re.compile(
    r"^(19[7-9][0-9]|2[01][0-9][0-9]|22[0-5][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{1,9}))?(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_TIME_WITHOUT_ZONE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$")
MAX_INPUTS: Final = 1000
MAX_VALUES: Final = 256
MAX_PAYLOAD_BYTES: Final = 1 << 20
NUMBER_MAX: Final = 1.7976931348623157e308  # the largest finite IEEE 754 double: what a JSON reader can hold

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SHORT: Final = reprlib.Repr()  # a message quotes what it refuses, cut short (a payload can be 1 MiB of junk)
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 60, 60, 2, 4, 4
_show: Final = _SHORT.repr


class TraceEventError(RecordError):
    """A payload that is not a ``pilotline.trace.v1`` event; ``reason`` names the field and what was expected.

    The reason goes to ingest's and the genealogy's quarantine as it is, where an engineer reads it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------------------ field checks
def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > TEXT_MAX_LEN or not TEXT_PATTERN.fullmatch(value):
        raise TraceEventError(
            f"'{name}' must be a printable string of 1..{TEXT_MAX_LEN} characters without leading or trailing "
            f"spaces, got {_show(value)}"
        )
    return value


def _number(value: Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceEventError(f"'{name}' must be a number, got {_show(value)}")
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > NUMBER_MAX:
        raise TraceEventError(f"'{name}' must be finite, got {_show(value)}")
    return value


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > ID_MAX_LEN or not ID_PATTERN.fullmatch(value):
        raise TraceEventError(
            f"'{name}' must match {ID_PATTERN.pattern} (at most {ID_MAX_LEN} characters), got {_show(value)}"
        )
    return value


def _type(value: Any, name: str) -> str:
    if not isinstance(value, str) or value not in ID_PREFIX_BY_TYPE:
        raise TraceEventError(f"'{name}' must be one of {', '.join(TYPES)}, got {_show(value)}")
    return value


def _prefix(entity_id: str, entity_type: str, name: str) -> None:
    prefix = ID_PREFIX_BY_TYPE[entity_type]
    if not entity_id.startswith(prefix):
        raise TraceEventError(f"'{name}' {entity_id!r} is a {entity_type}, whose IDs start with {prefix!r}")


def parse_time_ns(value: Any, name: str) -> int:
    """An RFC 3339 time with a zone -> integer ns since 1970 UTC, exact (no float on the way)."""
    m = TIME_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        if isinstance(value, str) and _TIME_WITHOUT_ZONE.fullmatch(value):
            raise TraceEventError(f"'{name}' has no time zone; send UTC with a trailing Z: {_show(value)}")
        raise TraceEventError(
            f"'{name}' is not an ISO 8601 / RFC 3339 time like 2026-11-21T10:00:00.000000Z (years 1970..2259), "
            f"got {_show(value)}"
        )
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as exc:
        raise TraceEventError(f"'{name}' is not a calendar time ({exc}): {_show(value)}") from None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def _seq(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 42.0 is the integer 42 (as JSON Schema says)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SEQ_MAX:
        raise TraceEventError(f"'seq' must be an integer >= 1 and < 2**53, got {_show(value)}")
    return value


def _values(value: Any, name: str) -> dict[str, EventValue]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TraceEventError(f"'{name}' must be an object of name -> number, got {type(value).__name__}")
    if len(value) > MAX_VALUES:
        raise TraceEventError(f"'{name}' has {len(value)} entries; at most {MAX_VALUES}")
    out: dict[str, EventValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            raise TraceEventError(f"'{name}' key {_show(key)} must match {KEY_PATTERN.pattern}")
        if item is None:
            continue  # "not available" (the simulator writes non-finite readings as null): nothing to record
        if isinstance(item, bool):
            out[key] = item
        elif isinstance(item, str):
            out[key] = _text(item, f"{name}.{key}")
        elif isinstance(item, (int, float)):
            out[key] = _number(item, f"{name}.{key}")
        else:
            raise TraceEventError(
                f"'{name}.{key}' must be a number, boolean, string or null, got {type(item).__name__} {_show(item)}"
            )
    return out


def _inputs(value: Any, entity_id: str, kind: str) -> tuple[TraceInput, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TraceEventError(f"'inputs' must be a list, got {type(value).__name__}")
    if len(value) > MAX_INPUTS:
        raise TraceEventError(f"'inputs' has {len(value)} entries; at most {MAX_INPUTS}")
    out: list[TraceInput] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TraceEventError(f"'inputs[{i}]' must be an object with id and type, got {type(item).__name__}")
        unknown = [k for k in item if k not in INPUT_FIELDS]
        if unknown:
            raise TraceEventError(f"'inputs[{i}]' has unknown field(s) {_show(unknown)}; it has only "
                                  f"{', '.join(INPUT_FIELDS)}")
        input_id = _id(item.get("id"), f"inputs[{i}].id")
        input_type = _type(item.get("type"), f"inputs[{i}].type")
        _prefix(input_id, input_type, f"inputs[{i}].id")
        if kind == "created" and input_id == entity_id:
            raise TraceEventError(f"'{entity_id}' cannot be created from itself (inputs[{i}])")
        from_m, to_m = item.get("from_m"), item.get("to_m")
        if from_m is not None:
            from_m = float(_number(from_m, f"inputs[{i}].from_m"))
        if to_m is not None:
            to_m = float(_number(to_m, f"inputs[{i}].to_m"))
        if (from_m is None) != (to_m is None):
            raise TraceEventError(f"'inputs[{i}]' gives only one of from_m / to_m; give both or neither")
        if from_m is not None and to_m is not None and not 0 <= from_m < to_m:
            raise TraceEventError(f"'inputs[{i}]' needs 0 <= from_m < to_m, got {from_m}..{to_m}")
        out.append(TraceInput(input_id, input_type, from_m, to_m))
    return tuple(out)


# ------------------------------------------------------------------------------------------------------ JSON text
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = sorted({k for k in out if sum(1 for key, _ in pairs if key == k) > 1})
        raise ValueError(f"key(s) {_show(twice)} given twice in one object")
    return out


def load_json(payload: bytes | str) -> Any:
    """Strict JSON: at most 1 MiB, no NaN / Infinity, no key twice; raises TraceEventError('not JSON: ...')."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise TraceEventError(f"not JSON: a trace event of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        return json.loads(payload, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise TraceEventError(f"not JSON: {exc}") from None


# ------------------------------------------------------------------------------------------------------ the parser
def parse_trace_event(payload: bytes | str | Mapping[str, Any]) -> TraceEvent:
    """Check one trace event against the rules above and return it typed; raise ``TraceEventError`` saying why not."""
    raw = load_json(payload) if isinstance(payload, (bytes, bytearray, str)) else payload
    if not isinstance(raw, Mapping):
        raise TraceEventError(f"a trace event must be a JSON object, got {type(raw).__name__}")
    if raw.get("schema") != SCHEMA:  # read first: the version says which rules apply to the rest
        raise TraceEventError(f"'schema' must be {SCHEMA!r}, got {_show(raw.get('schema'))}")
    unknown = [k for k in raw if k not in REQUIRED and k not in OPTIONAL]
    if unknown:
        raise TraceEventError(f"unknown field(s) {_show(unknown)}; {SCHEMA} has only "
                              f"{', '.join(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if raw.get(k) is None]
    if missing:
        raise TraceEventError(f"trace event lacks required field(s) {missing}")
    seq = _seq(raw["seq"])
    line = raw["line"]
    if not isinstance(line, str) or not LINE_PATTERN.fullmatch(line):
        raise TraceEventError(f"'line' must match {LINE_PATTERN.pattern}, got {_show(line)}")
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise TraceEventError(f"'kind' must be one of {', '.join(KINDS)}, got {_show(kind)}")
    entity_id = _id(raw["id"], "id")
    entity_type = _type(raw["type"], "type")
    _prefix(entity_id, entity_type, "id")
    time_ns = parse_time_ns(raw["time"], "time")
    start_ns = None if raw.get("start") is None else parse_time_ns(raw["start"], "start")
    end_ns = None if raw.get("end") is None else parse_time_ns(raw["end"], "end")
    if start_ns is not None and end_ns is not None and end_ns < start_ns:
        raise TraceEventError(f"'end' ({raw['end']}) is before 'start' ({raw['start']})")
    step = _text(raw["step"], "step")
    station = _text(raw["station"], "station")
    equipment = raw.get("equipment")
    equipment = None if equipment in (None, "") else _text(equipment, "equipment")
    return TraceEvent(
        seq=seq, line=line, time_ns=time_ns, kind=cast(TraceKind, kind), id=entity_id, type=entity_type,
        step=step, station=station, equipment=equipment, start_ns=start_ns, end_ns=end_ns,
        inputs=_inputs(raw.get("inputs"), entity_id, kind),
        parameters=_values(raw.get("parameters"), "parameters"),
        properties=_values(raw.get("properties"), "properties"),
    )
