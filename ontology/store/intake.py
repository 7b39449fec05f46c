"""A prediction's or an audit record's arguments, checked when the caller hands them over.

Why at the call and not on the placer thread: a caller's mistake (an empty model name, a NaN output, a decision that
JSON cannot hold) is the caller's to see, as an `EventError` raised where it was made; what reaches the queue is a
plain dict that the placer only has to place (or keep waiting for its entity). Trace events are checked by the
contract's parser instead (ontology/events.py), because they come from the line, not from a caller of this code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ontology.events import EventError, check_id, check_number, parse_time


def _as_time(value: datetime | str | None, name: str) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventError(f"'{name}' must be timezone-aware (UTC)")
        return value.astimezone(UTC)
    return parse_time(value, name)


def prediction_item(entity_id: str, model_name: str, model_version: str, outputs: Mapping[str, float],
                    std: Mapping[str, float] | None, time: datetime | str | None, line: str | None) -> dict[str, Any]:
    """The queued form of GenealogyStore.add_prediction's arguments; EventError (a ValueError) if one is wrong."""
    check_id(entity_id, "entity_id")
    for name, text in (("model_name", model_name), ("model_version", model_version)):
        if not isinstance(text, str) or not text.strip() or len(text) > 128:
            raise EventError(f"'{name}' must be a non-empty string of at most 128 characters, got {text!r}")
    if not isinstance(outputs, Mapping) or not outputs:
        raise EventError("'outputs' must be a non-empty mapping of output name -> number")
    clean_out = {str(k): check_number(v, f"outputs.{k}") for k, v in outputs.items()}
    clean_std = {str(k): check_number(v, f"std.{k}") for k, v in (std or {}).items()}
    unknown = set(clean_std) - set(clean_out)
    if unknown:
        raise EventError(f"'std' has keys that are not outputs: {sorted(unknown)}")
    if any(v < 0 for v in clean_std.values()):
        raise EventError("'std' values must be >= 0")
    when = _as_time(time, "time")
    return {"entity_id": entity_id, "model_name": model_name, "model_version": model_version, "outputs": clean_out,
            "std": clean_std, "time": when.isoformat(), "line": line}


def audit_item(target: str, who: str, when: datetime | str, before: Any, after: Any, why: str,
               model_version: str | None, line: str | None) -> dict[str, Any]:
    """The queued form of GenealogyStore.add_audit's arguments; EventError (a ValueError) if one is wrong."""
    if not isinstance(target, str) or not target.strip() or len(target) > 256 or not target.isprintable():
        raise EventError("'target' must be a trace ID or a setpoint name (printable, <= 256 chars), "
                         f"got {target!r}")
    for name, text in (("who", who), ("why", why)):
        if not isinstance(text, str) or not text.strip() or len(text) > 2000:
            raise EventError(f"'{name}' must be a non-empty string, got {text!r}")
    if model_version is not None and (not isinstance(model_version, str) or not model_version.strip()):
        raise EventError(f"'model_version' must be a non-empty string or None, got {model_version!r}")
    for name, value in (("before", before), ("after", after)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise EventError(f"'{name}' must be JSON-serialisable without NaN, got {value!r}") from None
    stamp = _as_time(when, "when")
    return {"target": target, "who": who, "when": stamp.isoformat(), "before": before, "after": after, "why": why,
            "model_version": model_version, "line": line}
