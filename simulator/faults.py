"""Instrument faults as a downstream consumer sees them (docs/simulator.md, "Faults").

- dropout: the value is withheld, status ``BadNoCommunication`` (OPC UA value null) for the duration;
- stuck: the last good value is repeated with status ``Good`` (only a flat line gives it away);
- spike: one sample multiplied by ``magnitude`` (default 1.3), status ``Good``;
- nan: the value is NaN with status ``Good`` (a badly behaved device; ingest must quarantine it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

GOOD = "Good"
DROPOUT_STATUS = "BadNoCommunication"
CHANNEL_FAULT_STATUS = "BadDeviceFailure"
WAITING_STATUS = "BadWaitingForInitialData"


@dataclass
class ActiveFault:
    kind: str
    path: str
    until_s: float
    magnitude: float
    frozen: Any = None
    used: bool = False


class FaultSet:
    def __init__(self) -> None:
        self.active: list[ActiveFault] = []

    def add(self, kind: str, path: str, t_s: float, duration_s: float, magnitude: float) -> None:
        self.active.append(ActiveFault(kind, path, t_s + duration_s, magnitude))

    def apply(self, values: dict[str, Any], t_s: float) -> dict[str, tuple[Any, str]]:
        """{path: value} -> {path: (value, status)} with the active faults applied; expired faults are dropped."""
        out = {p: (v, GOOD) for p, v in values.items()}
        keep: list[ActiveFault] = []
        for f in self.active:
            if f.kind == "spike":
                if f.path in values and not f.used:
                    out[f.path] = (values[f.path] * f.magnitude, GOOD)
                    f.used = True
                if not f.used:
                    keep.append(f)
                continue
            if t_s >= f.until_s:
                continue
            keep.append(f)
            if f.kind == "dropout":
                out[f.path] = (None, DROPOUT_STATUS)
            elif f.kind == "nan":
                if f.path in values:
                    out[f.path] = (math.nan, GOOD)
            elif f.kind == "stuck":
                if f.frozen is None and f.path in values:
                    f.frozen = values[f.path]
                if f.frozen is not None:
                    out[f.path] = (f.frozen, GOOD)
        self.active = keep
        return out
