"""The audit trail of every proposal, approval, rejection, write and mode change: who, when, before, after, why, model.

Each entry goes to every sink (InfluxDB measurement ``twin_audit``, the genealogy graph) and to a bounded in-memory
list the API serves. A failing sink is counted and logged, never allowed to stop the control loop, and the entry is
kept in memory either way.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from twin.store.lineproto import string_field, tag_value

log = logging.getLogger("twin.audit")

ACTIONS = ("proposed", "approved", "rejected", "expired", "write", "write_refused", "mode", "fallback",
           "calibration", "product")


@dataclass
class AuditEntry:
    id: int
    time_ns: int
    action: str
    who: str
    why: str
    recommendation_id: int | None = None
    loop: str | None = None
    target: str | None = None        # the setpoint node (writes) or the mode
    before: float | str | None = None
    after: float | str | None = None
    model_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AuditSink = Callable[[AuditEntry], None]


class AuditLog:
    def __init__(self, keep: int = 5000) -> None:
        self._ids = itertools.count(1)
        self.entries: deque[AuditEntry] = deque(maxlen=keep)
        self.sinks: list[AuditSink] = []
        self.sink_errors = 0
        self._lock = threading.Lock()

    def add_sink(self, sink: AuditSink) -> None:
        self.sinks.append(sink)

    def record(self, action: str, who: str, why: str, **kw: Any) -> AuditEntry:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}; known: {ACTIONS}")
        with self._lock:
            entry = AuditEntry(id=next(self._ids), time_ns=time.time_ns(), action=action, who=who, why=why, **kw)
            self.entries.append(entry)
        for sink in self.sinks:
            try:
                sink(entry)
            except Exception:  # noqa: BLE001 - an audit sink must not stop control; counted and logged
                self.sink_errors += 1
                log.exception("audit sink %r failed for entry %s", sink, entry.id)
        return entry

    def list(self, limit: int = 200, recommendation_id: int | None = None) -> list[AuditEntry]:
        with self._lock:
            items = [e for e in reversed(self.entries)
                     if recommendation_id is None or e.recommendation_id == recommendation_id]
        return items[:limit]


def audit_line_protocol(entry: AuditEntry, line: str) -> str:
    """One InfluxDB line for an audit entry (measurement ``twin_audit``; unbounded ids go into fields)."""

    tags = f"twin_audit,line={tag_value(line)},action={tag_value(entry.action)}"
    if entry.loop:
        tags += f",loop={tag_value(entry.loop)}"
    fields = [f"audit_id={entry.id}i", f"who={string_field(entry.who)}", f"why={string_field(entry.why)}"]
    if entry.recommendation_id is not None:
        fields.append(f"recommendation_id={entry.recommendation_id}i")
    if entry.target is not None:
        fields.append(f"target={string_field(str(entry.target))}")
    for name in ("before", "after"):
        v = getattr(entry, name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            fields.append(f"{name}={float(v)!r}")
        elif v is not None:
            fields.append(f"{name}_text={string_field(str(v))}")
    if entry.model_version:
        fields.append(f"model_version={string_field(entry.model_version)}")
    return f"{tags} {','.join(fields)} {entry.time_ns}"


def now_ns() -> int:
    return time.time_ns()
