"""Messages of devices that publish their own JSON (``mqtt.devices``): a field map says which members are the values,
their units, the time and the IDs; the line description's ``signals`` rules map each value onto the twin's names.

Why a field map and not a codec per vendor: a dry-room hygrometer, a scale and an MES all speak "some JSON"; what
differs is where the number sits. Values nothing maps are quarantined with the reason ``unmapped`` (nothing is lost
while the description catches up), a message that is not JSON or lacks a mapped value is quarantined whole.
"""

from __future__ import annotations

import math
from typing import Any

from connectors.codecs import decode_json
from connectors.mapping import resolve
from connectors.records import Quality, RecordError, Rejected, Sample, TraceValue, iso_to_ns
from connectors.settings import MqttJsonTopic
from connectors.units import conversion, normalise_unit

_TIME_FACTOR = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
JSON_TAGS = {"protocol": "mqtt"}


def member(doc: Any, path: str) -> Any:
    """``a.b.3`` -> doc["a"]["b"][3]; None when any step is missing."""
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


def _time(spec: MqttJsonTopic, doc: Any, received_ns: int) -> tuple[int, bool]:
    if not spec.time_path:
        return received_ns, False
    raw = member(doc, spec.time_path)
    if isinstance(raw, str):
        return iso_to_ns(raw), True
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return int(raw * _TIME_FACTOR[spec.time_unit]), True
    raise RecordError(f"time member {spec.time_path!r} is missing or not a time: {raw!r}")


def decode_device(spec: MqttJsonTopic, topic: str, raw: bytes, line: str,
                  received_ns: int) -> list[Sample | Rejected]:
    """One message -> its samples (and a ``Rejected`` per value nothing maps); a whole-message ``Rejected`` when it
    cannot be read."""
    try:
        doc = decode_json(raw)
        t_ns, timed = _time(spec, doc, received_ns)
    except RecordError as exc:
        reason = "malformed_json" if str(exc).startswith("not JSON") else "schema"
        return [Rejected(reason, str(exc), topic, raw, received_ns)]
    trace: dict[str, TraceValue] = {}
    for key, path in spec.ids.items():
        v = member(doc, path)
        if isinstance(v, str) and v:
            trace[key] = v
    out: list[Sample | Rejected] = []
    for jv in spec.values:
        value = member(doc, jv.path)
        item = f"{topic}/{jv.path}"
        if value is None:
            continue  # a device may leave a value out of one message
        source_unit = normalise_unit(str(member(doc, jv.unit_path) or "") if jv.unit_path else jv.unit)
        mapped = resolve(spec.signals, item)
        quality: Quality = "good" if timed else "uncertain"
        if mapped is None:
            out.append(Rejected("unmapped", f"{item}: no signals rule maps it (line description)", topic,
                                repr(value), t_ns))
            continue
        unit = source_unit
        if isinstance(value, int | float) and not isinstance(value, bool):
            if mapped.unit and source_unit:
                conv = conversion(source_unit, mapped.unit)
                if conv is not None:
                    value, unit = value * conv[0] + conv[1], mapped.unit
            elif mapped.unit:
                unit = mapped.unit
        elif not isinstance(value, str | bool):
            value = str(value)
        s = Sample(t_ns, line, mapped.station, mapped.signal, value, normalise_unit(unit), quality, topic,
                   dict(trace), received_ns, JSON_TAGS)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                (mapped.low is not None and value < mapped.low) or (mapped.high is not None and value > mapped.high)):
            out.append(Rejected("out_of_range", f"{mapped.station}/{mapped.signal} = {value!r} outside [{mapped.low}, "
                                         f"{mapped.high}]", topic, repr(value), t_ns, s))
            continue
        out.append(s)
    if not out:
        return [Rejected("schema", f"none of the values {[v.path for v in spec.values]} is in the message", topic,
                         raw, received_ns)]
    return out
