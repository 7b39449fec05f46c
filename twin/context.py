"""What the API and the dashboard see of the running twin: one object the service assembles and the routes read.

Optional parts (store, genealogy, predictions, ingest) are ``None`` when not configured or not started; the routes
answer 503 with what to configure rather than failing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from twin.alarms import AlarmManager
from twin.audit import AuditLog
from twin.auth import TokenStore
from twin.control import Controller
from twin.live import LiveState
from twin.metrics import Metrics
from twin.service_settings import ServiceSettings

# history(station, signal, start_ns, end_ns, limit) -> list of {time_ns, value, quality, ...}
HistoryFn = Callable[[str, str, int, int, int], Awaitable[list[dict[str, Any]]]]
ReadyFn = Callable[[], dict[str, bool]]


@dataclass
class TwinContext:
    settings: ServiceSettings
    line: str
    live: LiveState
    alarms: AlarmManager
    audit: AuditLog
    tokens: TokenStore
    controller: Controller
    metrics: Metrics
    config_dump: Callable[[], dict[str, Any]] = dict
    history: HistoryFn | None = None
    influx: Callable[[], Any] | None = None  # -> twin.store.query.InfluxQuery of the store (opened on first use)
    ready: ReadyFn | None = None
    genealogy: Any = None                 # ontology.store.GenealogyStore (genealogy / downstream / status)
    quarantine: Any = None                # twin.quarantine.Quarantine of the ingest pipeline (list / counts)
    calibration: Any = None               # twin.calibration.Calibration (estimates, versions, accept / rollback)
    predictions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))
    started_ns: int = field(default_factory=time.time_ns)

    def add_prediction(self, pred: dict[str, Any]) -> None:
        self.predictions.append(pred)
