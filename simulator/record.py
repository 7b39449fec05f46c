"""``--record FILE``: every value the simulator publishes, as JSON lines, flushed every step.

Line format::

    {"t": "2026-11-21T10:00:00.000000Z", "t_ns": 1795255200000000000, "source": "opcua:ns=2;s=PilotLine...",
     "value": 14.3, "status": "Good"}

``t``/``t_ns`` are simulated time (the OPC UA SourceTimestamp / the JSON ``time``). ``source`` is
``opcua:<nodeid>`` for a value change, ``opcua-event:<nodeid of PilotLine>`` for a TraceEventType event (value =
the trace JSON), ``mqtt:<topic>`` for an MQTT message (value = the JSON payload, status null), or
``sim:opcua-server`` for the server going ``down`` / ``up`` during a restart fault. Non-finite numbers are written
as the strings "NaN", "Infinity", "-Infinity" so every line is strict JSON.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .trace import iso


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def t_ns(t: datetime) -> int:
    return int(round(t.timestamp() * 1_000_000)) * 1000


class Recorder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")
        self.lines = 0

    def write(self, t: datetime, source: str, value: Any, status: str | None) -> None:
        rec = {"t": iso(t), "t_ns": t_ns(t), "source": source, "value": _jsonable(value), "status": status}
        self._fh.write(json.dumps(rec, separators=(",", ":"), allow_nan=False) + "\n")
        self.lines += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        self._fh.close()
