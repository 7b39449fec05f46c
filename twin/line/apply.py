"""A line description -> the configuration sections the connectors and the twin's services read.

The description is the base; the twin's own config file and the environment are merged over it, so a deployment
can still move an endpoint (``PILOTLINE__OPCUA__ENDPOINT``) without editing the line's file. The first OPC UA source is
the ``opcua`` section (what the environment overrides address), the others ``opcua_servers``; every source gets
the line's trace list (a trace node says which source has it, or any that resolves it).
"""

from __future__ import annotations

from typing import Any

from connectors.settings import ValidationConfig
from twin.line.description import LineDescription


def config_sections(desc: LineDescription) -> dict[str, Any]:
    trace = [t.model_dump() for t in desc.trace]
    sources = []
    for src in desc.sources.opcua:
        d = src.model_dump()
        d["trace"] = [*d.get("trace", []), *trace]
        sources.append(d)
    out: dict[str, Any] = {
        "line": {"id": desc.line.id, "name": desc.line.name or desc.line.id},
        "opcua": sources[0] if sources else {"enabled": False},
        "opcua_servers": sources[1:],
        "sparkplug": [s.model_dump() for s in desc.sources.sparkplug],
        "ingest": {"trace_from_events": [t.model_dump() for t in desc.trace_events]},
        "validation": {"ranges": {k: v.model_dump() for k, v in {**ValidationConfig().ranges, **desc.ranges}.items()}},
        "service": {
            "live": {"specs": {k: v.model_dump() for k, v in desc.specs.items()}},
            "control": {"products": {k: v.model_dump() for k, v in desc.products.items()}, "product": desc.product},
            "dashboard": {"stations": [u.model_dump() for u in desc.equipment.units]},
        },
    }
    if desc.sources.mqtt is not None:
        out["mqtt"] = desc.sources.mqtt.model_dump()
    return out
