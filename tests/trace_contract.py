"""The trace event of the traceability contract (docs/traceability.md), verbatim: the one parser of it (contract.trace)
is tested against this one example through both of its doors (connectors.records for ingest, ontology.events for the
graph) and against the JSON Schema (tests/contract). Copy it before changing it."""

from __future__ import annotations

from typing import Any

README_TRACE_EVENT: dict[str, Any] = {
    "schema": "pilotline.trace.v1", "seq": 42, "line": "PL1", "time": "2026-11-21T10:00:00.000000Z",
    "kind": "created", "id": "CR-C-000001", "type": "CoatedRoll", "step": "Coating", "station": "Coating/Cathode",
    "equipment": "SlotDieCoater-C", "start": "2026-11-21T09:00:00.000000Z", "end": "2026-11-21T10:00:00.000000Z",
    "inputs": [{"id": "SB-C-000001", "type": "SlurryBatch", "from_m": 0.0, "to_m": 200.0}],
    "parameters": {"pump_flow_rate_cm3_h": 696.0, "web_speed_m_min": 1.0},
    "properties": {"length_m": 200.0, "mass_loading_mg_cm2_mean": 14.31},
}
