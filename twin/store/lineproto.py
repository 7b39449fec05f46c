"""Samples and trace events as InfluxDB line protocol: the schema lives here and in docs/ingest.md, nowhere else.

Schema (DESIGN.md section 4: measurement per station, low-cardinality tags, unbounded IDs in fields):

- measurement = the station's first part (``Coating``, ``Drying``, ``DryRoom``, ``Formation``)
- tags: ``line``, ``lane`` (``Cathode`` / ``Anode`` / ... when the station has one), ``signal``, ``unit``,
  ``quality`` (good / uncertain / bad), ``roll_id`` and ``slurry_batch_id`` (tens per day), ``channel`` (cycler
  channel, bounded), plus configured default tags
- fields: ``value`` (float; every number is stored as float so a series never changes type), or ``value_bool`` /
  ``value_str``; a bad sample without a finite value has only ``bad=true``; ``roll_position_m`` (float), ``seq``
  (integer), ``source_roll_id``, ``segment_id``, ``sheet_id``, ``stack_id``, ``cell_id``, ``formation_run_id`` (strings)
- timestamp: the sample's ``time_ns`` (ns precision). Same series and timestamp overwrite, so replays are idempotent.

Trace events go to measurement ``trace_events`` with tags ``line``, ``kind``, ``type``, ``step`` and fields ``id``,
``seq``, ``station``, ``time_ns`` and ``json`` (the whole event). Their point timestamp is the event time truncated
to the microsecond plus ``seq % 1000`` ns, so two events of the same kind and type at the same instant never
overwrite each other while a replay of the same event still does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Final

from connectors.records import Sample, TraceEvent

TRACE_MEASUREMENT: Final = "trace_events"
TAG_TRACE_KEYS: Final = ("roll_id", "slurry_batch_id", "channel")
STRING_FIELD_TRACE_KEYS: Final = ("source_roll_id", "segment_id", "sheet_id", "stack_id", "cell_id", "formation_run_id")

_MEAS_ESC: Final = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_TAG_ESC: Final = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\\": "\\\\"})
_STR_ESC: Final = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})


def tag_value(s: str) -> str:
    """A tag key or value escaped for line protocol (the one escaping every writer of the twin uses)."""
    return s.translate(_TAG_ESC)


def string_field(s: str) -> str:
    """A string field value, quoted and escaped for line protocol."""
    return '"' + s.translate(_STR_ESC) + '"'


def measurement_of(station: str) -> tuple[str, str]:
    """``Coating/Cathode`` -> (``Coating``, ``Cathode``); ``DryRoom`` -> (``DryRoom``, ``""``)."""
    head, _, lane = station.partition("/")
    return head, lane


_PREFIX_CACHE: dict[tuple[object, ...], str] = {}


def _prefix(s: Sample, trace: object) -> str:
    """``measurement,tags`` of a sample; cached because a line has a few thousand series, not millions."""
    t = s.trace
    key = (s.station, s.line, s.signal, s.unit, s.quality, t.get("roll_id"), t.get("slurry_batch_id"),
           t.get("channel"), tuple(s.tags.items()) if s.tags else ())
    hit = _PREFIX_CACHE.get(key)
    if hit is not None:
        return hit
    meas, lane = measurement_of(s.station)
    tags: dict[str, str] = dict(s.tags)
    tags["line"] = s.line
    if lane:
        tags["lane"] = lane
    tags["signal"] = s.signal
    if s.unit:
        tags["unit"] = s.unit
    tags["quality"] = s.quality
    for k in TAG_TRACE_KEYS:
        v = t.get(k)
        if isinstance(v, str) and v:
            tags[k] = v
    tag_text = ",".join(f"{tag_value(k)}={tag_value(tags[k])}" for k in sorted(tags) if tags[k])
    prefix = f"{meas.translate(_MEAS_ESC)},{tag_text}"
    if len(_PREFIX_CACHE) > 200_000:
        _PREFIX_CACHE.clear()
    _PREFIX_CACHE[key] = prefix
    return prefix


def sample_line(s: Sample) -> str:
    """One line of line protocol; tag keys sorted (InfluxData's write advice)."""
    trace = s.trace
    v = s.value
    if v.__class__ is float:
        fields = f"value={v!r}" if math.isfinite(v) else "bad=true"
    elif isinstance(v, bool):
        fields = f"value_bool={'true' if v else 'false'}"
    elif isinstance(v, int | float):
        fields = f"value={float(v)!r}" if math.isfinite(v) else "bad=true"
    else:
        fields = f"value_str={string_field(str(v))}"
    if trace:
        extra: list[str] = []
        pos = trace.get("roll_position_m")
        if isinstance(pos, int | float) and not isinstance(pos, bool) and math.isfinite(pos):
            extra.append(f"roll_position_m={float(pos)!r}")
        seq = trace.get("seq")
        if isinstance(seq, int | float) and not isinstance(seq, bool) and math.isfinite(seq):
            extra.append(f"seq={int(seq)}i")
        for k in STRING_FIELD_TRACE_KEYS:
            sv = trace.get(k)
            if isinstance(sv, str) and sv:
                extra.append(f"{k}={string_field(sv)}")
        if extra:
            fields = fields + "," + ",".join(extra)
    return f"{_prefix(s, trace)} {fields} {s.time_ns}"


def trace_event_timestamp(e: TraceEvent) -> int:
    return (e.time_ns // 1000) * 1000 + e.seq % 1000


def trace_event_line(e: TraceEvent) -> str:
    tags = {"line": e.line, "kind": e.kind, "type": e.type, "step": e.step}
    tag_text = ",".join(f"{k}={tag_value(v)}" for k, v in sorted(tags.items()) if v)
    payload = json.dumps(e.to_json(), separators=(",", ":"), sort_keys=True)
    fields = (f"id={string_field(e.id)},seq={e.seq}i,station={string_field(e.station)},time_ns={e.time_ns}i,"
              f"json={string_field(payload)}")
    return f"{TRACE_MEASUREMENT},{tag_text} {fields} {trace_event_timestamp(e)}"


def encode(records: Iterable[Sample | TraceEvent]) -> tuple[bytes, int]:
    """Newline-joined lines and how many there are."""
    lines = [sample_line(r) if isinstance(r, Sample) else trace_event_line(r) for r in records]
    return ("\n".join(lines) + "\n").encode() if lines else b"", len(lines)
