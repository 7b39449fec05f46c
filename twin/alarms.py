"""Alarms with acknowledgement (ISA-18.2 in miniature): raised, cleared by the condition, acknowledged by a person.

An alarm is keyed by (kind, source) so a condition that persists raises one alarm, not one per sample. An alarm stays
listed until it is both cleared and acknowledged; ``history`` keeps the last ones for the API.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
KINDS = (
    "dew_point_high", "out_of_spec_stretch", "sensor_stuck", "sensor_missing", "sensor_bad", "model_out_of_domain",
    "connector_down", "control_fallback", "write_refused", "spc_out_of_control",
    # ingest (twin/ingest.py): the spool's budget or filesystem refuses frames; the in-memory queue sheds records
    "spool_full", "ingest_queue_full",
    # ingest: messages held back at an OPC UA server under backpressure that the server no longer had
    "data_lost_at_source",
    # genealogy (twin/service.py): many IDs named by samples stay unknown to the genealogy
    "unresolved_reference",
    # calibration (twin/calibration): the residual test finds the accepted model no longer fits the line
    "model_mismatch",
)


@dataclass
class Alarm:
    id: int
    kind: str
    source: str
    severity: Severity
    message: str
    raised_ns: int
    active: bool = True
    cleared_ns: int | None = None
    acked_by: str | None = None
    acked_ns: int | None = None
    count: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AlarmManager:
    def __init__(self, history: int = 500) -> None:
        self._ids = itertools.count(1)
        self._open: dict[tuple[str, str], Alarm] = {}
        self._by_id: dict[int, Alarm] = {}
        self._history: deque[Alarm] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, Alarm], None]] = []
        self.raised_total = 0

    def subscribe(self, fn: Callable[[str, Alarm], None]) -> None:
        """``fn(event, alarm)`` with event in raised / cleared / acked; called outside the lock."""
        self._listeners.append(fn)

    def _emit(self, event: str, alarm: Alarm) -> None:
        for fn in list(self._listeners):
            fn(event, alarm)

    def raise_(self, kind: str, source: str, message: str, severity: Severity = "warning",
               now_ns: int | None = None, **details: Any) -> Alarm:
        if kind not in KINDS:
            raise ValueError(f"unknown alarm kind {kind!r}; known: {KINDS}")
        now_ns = now_ns if now_ns is not None else time.time_ns()
        with self._lock:
            existing = self._open.get((kind, source))
            if existing is not None and existing.active:
                existing.count += 1
                existing.message = message
                existing.details.update(details)
                return existing
            alarm = Alarm(id=next(self._ids), kind=kind, source=source, severity=severity, message=message,
                          raised_ns=now_ns, details=dict(details))
            self._open[(kind, source)] = alarm
            self._by_id[alarm.id] = alarm
            self.raised_total += 1
        self._emit("raised", alarm)
        return alarm

    def clear(self, kind: str, source: str, now_ns: int | None = None) -> Alarm | None:
        """The condition is gone; the alarm stays listed until acknowledged."""
        with self._lock:
            alarm = self._open.get((kind, source))
            if alarm is None or not alarm.active:
                return None
            alarm.active = False
            alarm.cleared_ns = now_ns if now_ns is not None else time.time_ns()
            self._retire_if_done(alarm)
        self._emit("cleared", alarm)
        return alarm

    def ack(self, alarm_id: int, who: str) -> Alarm:
        with self._lock:
            alarm = self._by_id.get(alarm_id)
            if alarm is None:
                raise KeyError(f"no alarm with id {alarm_id}; list them with GET /api/alarms")
            if alarm.acked_by is None:
                alarm.acked_by = who
                alarm.acked_ns = time.time_ns()
            self._retire_if_done(alarm)
        self._emit("acked", alarm)
        return alarm

    def _retire_if_done(self, alarm: Alarm) -> None:
        if not alarm.active and alarm.acked_by is not None:
            self._open.pop((alarm.kind, alarm.source), None)
            self._history.append(alarm)

    def is_active(self, kind: str, source: str) -> bool:
        a = self._open.get((kind, source))
        return a is not None and a.active

    def list(self, include_history: bool = False) -> list[Alarm]:
        with self._lock:
            items = sorted(self._open.values(), key=lambda a: a.raised_ns, reverse=True)
            if include_history:
                items += list(reversed(self._history))
            return items

    def active_count(self) -> int:
        return sum(1 for a in self._open.values() if a.active)
