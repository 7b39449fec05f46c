"""Trace events as the genealogy takes them: the contract's one parser, with the genealogy's error type.

``parse_event`` is ``contract.trace.parse_trace_event`` (the parser ingest uses too, so what ingest stores the
genealogy places, and what one refuses the other refuses with the same reason); ``TraceEvent`` and ``Input`` are the
contract's records. ``EventError`` is what the genealogy quarantines: a trace event, prediction or audit that cannot
be placed, its message the quarantine reason an engineer reads. ``parse_time``, ``check_id`` and ``check_number``
check the genealogy's other inputs (predictions, audits, query parameters).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

from contract.records import ID_MAX_LEN, ID_PATTERN, TraceEvent, is_valid_id
from contract.records import TraceInput as Input
from contract.trace import (
    ID_PREFIX_BY_TYPE,
    KEY_PATTERN,
    KINDS,
    LINE_PATTERN,
    SCHEMA,
    TEXT_MAX_LEN,
    TYPES,
    TraceEventError,
    parse_trace_event,
)

MAX_TEXT: Final = TEXT_MAX_LEN

__all__ = [
    "ID_MAX_LEN", "ID_PATTERN", "ID_PREFIX_BY_TYPE", "KEY_PATTERN", "KINDS", "LINE_PATTERN", "MAX_TEXT", "SCHEMA",
    "TYPES", "EventError", "Input", "TraceEvent", "check_id", "check_number", "parse_event", "parse_time",
]


class EventError(ValueError):
    """A trace event (or prediction / audit) that cannot be placed; the message is the quarantine reason."""


def parse_time(value: Any, name: str) -> datetime:
    """ISO 8601 with a zone (Z or +hh:mm) -> aware UTC datetime; naive times are refused (docs/traceability.md: UTC
    everywhere)."""
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
    return parsed.astimezone(UTC)


def check_id(value: Any, name: str) -> str:
    if not is_valid_id(value):
        raise EventError(
            f"'{name}' must match {ID_PATTERN.pattern} (at most {ID_MAX_LEN} characters), got {value!r}"
        )
    return value


def check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventError(f"'{name}' must be a number, got {value!r}")
    number = float(value) if abs(value) <= 1.7976931348623157e308 else math.inf  # a huge int: no OverflowError
    if not math.isfinite(number):
        raise EventError(f"'{name}' must be finite, got {value!r}")
    return number


def parse_event(raw: Any) -> TraceEvent:
    """Check a trace event (dict, JSON text, or a record already parsed) and return it typed; raise EventError why
    not."""
    if isinstance(raw, TraceEvent):
        return raw  # parsed by the same parser on the way in (ingest's record): nothing to check twice
    try:
        return parse_trace_event(raw)
    except TraceEventError as exc:
        raise EventError(exc.reason) from None
