"""The records connectors produce, as ingest knows them: re-exported from the contract package at the bottom.

``Sample``, ``TraceEvent`` (``TraceEvent.from_json`` is ``contract.trace.parse_trace_event``, the one strict parser
of ``pilotline.trace.v1`` the genealogy uses too), ``Rejected`` and their helpers live in ``contract.records``; this
module keeps the names connectors and the twin import, plus the lenient time reader of cycler messages.
"""

from __future__ import annotations

from typing import Final

from contract.records import (
    ID_MAX_LEN,
    ID_PATTERN,
    QUALITIES,
    TRACE_EVENT_SCHEMA,
    TRACE_KEYS,
    EventValue,
    Quality,
    Record,
    RecordError,
    Rejected,
    Sample,
    TraceEvent,
    TraceInput,
    TraceKind,
    TraceValue,
    Value,
    is_valid_id,
    iso_to_ns,
    ns_to_iso,
)
from contract.trace import KINDS, TYPES, TraceEventError

TRACE_KINDS: Final[frozenset[str]] = frozenset(KINDS)
TRACE_TYPES: Final[frozenset[str]] = frozenset(TYPES)

__all__ = [
    "ID_MAX_LEN", "ID_PATTERN", "QUALITIES", "TRACE_EVENT_SCHEMA", "TRACE_KEYS", "TRACE_KINDS", "TRACE_TYPES",
    "EventValue", "Quality", "Record", "RecordError", "Rejected", "Sample", "TraceEvent", "TraceEventError",
    "TraceInput", "TraceKind", "TraceValue", "Value", "is_valid_id", "iso_to_ns", "ns_to_iso",
]


def _ns_from_json(value: object, what: str) -> int:
    """A cycler message's time: an RFC 3339 string (no offset means UTC) or integer ns (trace events are stricter)."""
    if isinstance(value, bool):
        raise RecordError(f"{what}: expected an RFC 3339 string or integer ns, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return iso_to_ns(value)
    raise RecordError(f"{what}: expected an RFC 3339 string or integer ns, got {type(value).__name__}")
