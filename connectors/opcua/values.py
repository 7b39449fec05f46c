"""From OPC UA to records: a DataValue's value and quality, the Samples of one node's value (arrays become one series
per element), a TraceEventType event's fields -> ``TraceEvent`` (or ``Rejected`` with the reason)."""

from __future__ import annotations

import json
from typing import Any

from asyncua import ua

from connectors.opcua.browse import NodeInfo
from connectors.records import Quality, RecordError, Rejected, Sample, TraceEvent


def quality_of(status: ua.StatusCode | None) -> Quality:
    code = 0 if status is None else int(status.value)
    sev = code >> 30
    return "good" if sev == 0 else "uncertain" if sev == 1 else "bad"


def plain_value(dv: ua.DataValue) -> tuple[Any, Quality, bool]:
    """The value as the store takes it, its quality, and whether it is a numeric array.

    No value at all is NaN and at best "uncertain"; lists, byte strings, LocalizedText, NodeIds and anything else that
    is not a number, a boolean or a string are kept as their text."""
    variant = dv.Value
    value = variant.Value if variant is not None else None
    quality = quality_of(dv.StatusCode)
    is_array = isinstance(value, list | tuple) and bool(value) and all(
        isinstance(x, float | int) and not isinstance(x, bool) for x in value)
    if not is_array:
        if value is None:
            value = float("nan")
            quality = "bad" if quality == "good" else quality
        elif not isinstance(value, float | int | bool | str):  # lists, bytes, LocalizedText, NodeId ...: as text
            value = str(value)
    return value, quality, is_array


def samples_of(info: NodeInfo, line: str, t_ns: int, value: Any, quality: Quality, is_array: bool,
               received_ns: int) -> list[Sample]:
    """The untagged samples of one node's value (the trace context is added later, see ``OpcuaConnector._tag``),
    converted to the node's mapped unit where the server speaks another."""
    if info.scale is not None:
        f, o = info.scale
        if is_array:
            value = [x * f + o for x in value]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = value * f + o
    if is_array:
        # an array item (e.g. a cross-web gauge track): element i is the series "<Signal>.P<iii>", the same
        # series a server publishing one scalar node per track would give
        tags = dict(info.tags)
        return [Sample(t_ns, line, info.station, f"{info.signal}.P{i:03d}", x, info.unit, quality, info.source, {},
                       received_ns, tags) for i, x in enumerate(value)]
    return [Sample(t_ns, line, info.station, info.signal, value, info.unit, quality, info.source, {}, received_ns,
                   dict(info.tags))]


def checked_samples(info: NodeInfo, line: str, t_ns: int, value: Any, quality: Quality, is_array: bool,
                    received_ns: int) -> list[Sample] | Rejected:
    """``samples_of``, or a ``Rejected`` (``out_of_range``, the sample attached) when a number lies outside the node's
    physical range (its mapping rule's, else its EURange), in the node's mapped unit. The live path and the history
    backfill both go through here."""
    if info.valid_range is not None and not _within(value, info.valid_range, info.scale):
        lo, hi = info.valid_range
        return Rejected("out_of_range", f"{info.station}/{info.signal} = {value!r} {info.unit} outside the node's "
                        f"range [{lo}, {hi}]", info.source, repr(value), t_ns,
                        samples_of(info, line, t_ns, value, quality, is_array, received_ns)[0])
    return samples_of(info, line, t_ns, value, quality, is_array, received_ns)
def _within(value: Any, rng: tuple[float | None, float | None], scale: tuple[float, float] | None) -> bool:
    """Numbers (and every element of an array), in the node's mapped unit, inside the range; anything else is the
    validator's business."""
    lo, hi = rng
    f, o = scale if scale is not None else (1.0, 0.0)
    items = value if isinstance(value, list | tuple) else [value]
    for raw in items:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw:
            continue
        x = raw * f + o
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            return False
    return True


def trace_event(event_fields: list[str], fields: list[Any], endpoint: str, now: int) -> TraceEvent | Rejected:
    """A TraceEventType event (its select clauses' values, in ``event_fields`` order) -> its ``Payload`` parsed."""
    values = {name: (f.Value if isinstance(f, ua.Variant) else f) for name, f in zip(event_fields, fields,
                                                                                     strict=False)}
    raw = values.get("Payload")
    if not isinstance(raw, str):
        return Rejected("schema", "TraceEventType event without a string Payload", endpoint,
                        json.dumps({k: str(v) for k, v in values.items()}), now)
    try:
        return TraceEvent.from_json(json.loads(raw))
    except (json.JSONDecodeError, RecordError) as exc:
        return Rejected("schema", f"trace event payload: {exc}", endpoint, raw, now)
