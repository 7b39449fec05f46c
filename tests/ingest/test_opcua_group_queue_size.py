"""``opcua.groups[].queue_size``: the monitored items of a group's nodes get the group's queue size (it was accepted
and never used: every monitored item got ``opcua.queue_size``), checked by what the server granted."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.opcua import OpcuaConnector
from connectors.settings import OpcuaConfig


async def test_a_group_queue_size_reaches_its_monitored_items(simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none", "--speed", "20"])
    cfg = OpcuaConfig.model_validate({
        "endpoint": sim.endpoint, "queue_size": 50, "trace_events": False,
        "discovery": {"enabled": False},
        "nodes": [{"name": "WetFilmThickness", "identifier": "PilotLine.Coating.Cathode.WetFilmThickness",
                   "station": "Coating/Cathode"}],
        "groups": [{"name": "dryer", "queue_size": 7,
                    "nodes": [{"name": "MassLoading", "identifier": "PilotLine.Drying.Cathode.MassLoading"}]},
                   {"name": "calender", "nodes": [{"name": "LineLoad",
                                                   "identifier": "PilotLine.Calendering.Cathode.LineLoad"}]}],
    })
    c = OpcuaConnector(cfg, "PL1", lambda recs, ack: ack() if ack else None)
    await c.start()
    try:
        assert await c.wait_connected(30), c.status()
        granted = {source.split(";s=", 1)[1]: size for source, size in c.queue_sizes.items()}
    finally:
        await c.stop()
    assert granted == {"PilotLine.Coating.Cathode.WetFilmThickness": 50, "PilotLine.Drying.Cathode.MassLoading": 7,
                       "PilotLine.Calendering.Cathode.LineLoad": 50}, granted
