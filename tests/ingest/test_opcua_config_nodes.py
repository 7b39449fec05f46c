"""Telegraf-style explicit nodes and node groups (discovery off): only those are subscribed, with their tags,
units from EngineeringUnits unless given, and an absolute deadband the server applies."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.opcua import OpcuaConnector
from connectors.records import Sample
from connectors.settings import OpcuaConfig


async def test_explicit_nodes_groups_tags_and_deadband(simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none", "--speed", "20"])
    cfg = OpcuaConfig.model_validate({
        "endpoint": sim.endpoint,
        "discovery": {"enabled": False},
        "default_tags": {"site": "lab"},
        "nodes": [{"name": "WetFilmThickness", "identifier": "PilotLine.Coating.Cathode.WetFilmThickness",
                   "station": "Coating/Cathode"}],
        "groups": [{"name": "dryer", "namespace": "urn:pilotline:simulator", "default_tags": {"machine": "dryer-c"},
                    "deadband": {"type": "absolute", "value": 1000.0},
                    "nodes": [{"name": "MassLoading", "identifier": "PilotLine.Drying.Cathode.MassLoading",
                               "unit": "mg/cm2"},
                              {"name": "WetMassLoading", "identifier": "PilotLine.Coating.Cathode.WetMassLoading",
                               "station": "Coating/Cathode"}]}],
    })
    got: list[Sample] = []
    c = OpcuaConnector(cfg, "PL1", lambda recs, ack: (got.extend(r for r in recs if isinstance(r, Sample)),
                                                       ack() if ack else None))
    await c.start()
    try:
        assert await c.wait_connected(30), c.status()
        await asyncio.sleep(4.0)
        st = c.status()
    finally:
        await c.stop()
    assert st["nodes"] == 3
    by: dict[str, list[Sample]] = {}
    for s in got:
        by.setdefault(s.signal, []).append(s)
    assert set(by) == {"WetFilmThickness", "MassLoading", "WetMassLoading"}
    wet = [s for s in by["WetFilmThickness"] if s.quality == "good"]
    assert len(wet) > 10 and all(s.unit == "um" and s.tags == {"site": "lab"} and s.station == "Coating/Cathode"
                                 for s in wet)
    dry = by["MassLoading"]
    assert all(s.tags == {"site": "lab", "machine": "dryer-c"} and s.station == "Drying/Cathode"
               and s.unit == "mg/cm2" for s in dry)
    # WetMassLoading changes every step like WetFilmThickness, but a 1000 mg/cm2 absolute deadband on a 0..80
    # signal lets at most the first good value through: the filter reached the server and works there
    wml = by["WetMassLoading"]
    assert sum(s.quality == "good" for s in wml) <= 1 < len(wet), [(s.value, s.quality) for s in wml]
