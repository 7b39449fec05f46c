"""MQTT payloads to records: cycler telemetry / results JSON and trace events (``pilotline.trace.v1``).

Topic scheme (docs/simulator.md): ``pilotline/<line>/formation/<channel>/telemetry|result`` and
``pilotline/<line>/trace``. A cycler message is one JSON object:

    {"seq": 17, "time": "2026-11-21T10:00:00.000000Z", "channel": "CH-01", "cell_id": "CELL-000001",
     "formation_run_id": "FR-000001", "step": "charge",
     "voltage_V": 3.71, "current_A": 1.2, "capacity_Ah": 0.4, "temperature_C": 25.3}

Every numeric member besides ``seq`` / ``time`` becomes one Sample; the unit comes from the member's suffix
(``_V``, ``_A``, ``_Ah``, ``_mAh``, ``_C`` (Celsius), ``_s``, ``_Wh``, ``_Ohm``, ``_pct``...) or from a ``units``
object (``{"voltage": "V"}``), and the signal name is the CamelCase of the stem (``voltage_V`` -> ``Voltage``).
String members other than the IDs become string samples. ``time`` may be RFC 3339 or integer ns; without it the
receive time is used (and said so in the sample's quality: ``uncertain``). A decoding failure returns ``Rejected``
with a reason (``malformed_json``, ``schema``, ``topic``); it never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from connectors.records import (
    Quality,
    RecordError,
    Rejected,
    Sample,
    TraceEvent,
    _ns_from_json,
)

TOPIC_RE: Final = re.compile(r"^pilotline/(?P<line>[^/]+)/"
                              r"(?:formation/(?P<channel>[^/]+)/(?P<kind>telemetry|result)|(?P<trace>trace))$")

SUFFIX_UNITS: Final[tuple[tuple[str, str], ...]] = (
    ("_mAh", "mA.h"), ("_Ah", "A.h"), ("_mWh", "mW.h"), ("_Wh", "W.h"), ("_mOhm", "mOhm"), ("_Ohm", "Ohm"),
    ("_mV", "mV"), ("_V", "V"), ("_mA", "mA"), ("_A", "A"), ("_W", "W"), ("_degC", "Cel"), ("_C", "Cel"),
    ("_K", "K"), ("_s", "s"), ("_min", "min"), ("_h", "h"), ("_pct", "%"), ("_percent", "%"), ("_g", "g"),
    ("_mg", "mg"), ("_Pa", "Pa"), ("_kPa", "kPa"), ("_mbar", "mbar"),
)
ID_MEMBERS: Final[dict[str, str]] = {
    "cell_id": "cell_id", "formation_run_id": "formation_run_id", "channel": "channel", "run_id": "formation_run_id",
}
SKIP_MEMBERS: Final = frozenset({"seq", "time", "time_ns", "line", "units", "schema", "kind", "type"})
MAX_PAYLOAD: Final = 1_000_000
#: Cycler values also exist as OPC UA items (Formation/CH-01/Voltage); the tag keeps the two series apart so that a
#: message and an OPC UA sample of the same instant never overwrite each other in InfluxDB.
MQTT_TAGS: Final = {"protocol": "mqtt"}
CYCLER_SCHEMAS: Final = {"telemetry": "pilotline.cycler.telemetry.v1", "result": "pilotline.cycler.result.v1"}


def _camel(stem: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[_\s]+", stem) if p)


def split_unit(member: str) -> tuple[str, str]:
    """``voltage_V`` -> (``Voltage``, ``V``); no known suffix -> (CamelCase, "")."""
    for suffix, unit in SUFFIX_UNITS:
        if member.endswith(suffix) and len(member) > len(suffix):
            return _camel(member[: -len(suffix)]), unit
    return _camel(member), ""


def decode_json(raw: bytes) -> Any:
    if len(raw) > MAX_PAYLOAD:
        raise RecordError(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD}")
    try:
        return json.loads(raw, parse_constant=lambda c: float(c))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from None


def decode_cycler(topic: str, line: str, channel: str, kind: str, raw: bytes,
                  received_ns: int) -> list[Sample] | Rejected:
    """A telemetry / result message to samples of station ``Formation/<channel>`` (measurement Formation,
    lane = channel)."""
    try:
        d = decode_json(raw)
    except RecordError as exc:
        return Rejected("malformed_json", str(exc), topic, raw, received_ns)
    if not isinstance(d, Mapping):
        return Rejected("schema", f"cycler {kind} must be a JSON object, got {type(d).__name__}", topic, raw,
                        received_ns)
    schema = d.get("schema", CYCLER_SCHEMAS[kind])
    if schema != CYCLER_SCHEMAS[kind]:
        return Rejected("schema", f"cycler {kind} schema must be {CYCLER_SCHEMAS[kind]!r}, got {schema!r}", topic,
                        raw, received_ns)
    seq = d.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return Rejected("schema", f"cycler {kind} needs an integer seq >= 0, got {seq!r}", topic, raw, received_ns)
    quality: Quality = "good"
    if "time" in d or "time_ns" in d:
        try:
            t_ns = _ns_from_json(d.get("time", d.get("time_ns")), "time")
        except RecordError as exc:
            return Rejected("schema", str(exc), topic, raw, received_ns)
    else:
        t_ns, quality = received_ns, "uncertain"
    payload_channel = d.get("channel", channel)
    if payload_channel != channel:
        return Rejected("schema", f"payload channel {payload_channel!r} differs from topic channel {channel!r}",
                        topic, raw, received_ns)
    trace: dict[str, str | float] = {"channel": channel, "seq": seq}
    for member, key in ID_MEMBERS.items():
        v = d.get(member)
        if v not in (None, ""):
            if not isinstance(v, str):
                return Rejected("schema", f"{member} must be a string ID, got {v!r}", topic, raw, received_ns)
            trace[key] = v
    units_member = d.get("units")
    units: Mapping[str, Any] = units_member if isinstance(units_member, Mapping) else {}
    out: list[Sample] = []
    for member, v in d.items():
        if member in SKIP_MEMBERS or member in ID_MEMBERS:
            continue
        if isinstance(v, Mapping | list) or v is None:
            continue  # nested structures are not samples (documented)
        name, unit = split_unit(member)
        unit = str(units.get(member, units.get(name.lower(), unit)))
        # a NaN or infinite value is kept here: validation quarantines it with reason "nan"
        if kind == "result":
            name = f"Result{name}"
        out.append(Sample(t_ns, line, f"Formation/{channel}", name, v, unit, quality, topic, trace, received_ns,
                          MQTT_TAGS))
    if not out:
        return Rejected("schema", f"cycler {kind} carries no values", topic, raw, received_ns)
    return out


def decode_trace(topic: str, raw: bytes, received_ns: int) -> TraceEvent | Rejected:
    """A ``pilotline.trace.v1`` event on any topic (the twin's own, or an MES's)."""
    try:
        return TraceEvent.from_json(decode_json(raw))
    except RecordError as exc:
        reason = "malformed_json" if str(exc).startswith("not JSON") else "schema"
        return Rejected(reason, str(exc), topic, raw, received_ns)


def decode_message(topic: str, raw: bytes, received_ns: int) -> list[Sample | TraceEvent] | Rejected:
    """Dispatch on the topic scheme."""
    m = TOPIC_RE.match(topic)
    if m is None:
        return Rejected("topic", f"topic {topic!r} is not in the pilotline/<line>/... scheme", topic, raw,
                        received_ns)
    if m.group("trace"):
        r = decode_trace(topic, raw, received_ns)
        return r if isinstance(r, Rejected) else [r]
    res = decode_cycler(topic, m.group("line"), m.group("channel"), m.group("kind"), raw, received_ns)
    return res if isinstance(res, Rejected) else list(res)
