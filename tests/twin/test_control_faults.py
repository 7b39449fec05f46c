"""A real fault in closed loop: the line's OPC UA server is killed (SIGKILL). The twin drops to advisory with a
connector-down alarm and writes nothing; when the server is back the connector recovers and the alarm clears, but
the loop stays in advisory until an engineer switches it on again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.twin.simstack import sim_args, start_time_in_past, twin_config, wait_for
from twin.auth import Principal, Role
from twin.service import TwinService

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
ENGINEER = Principal("eng", Role.engineer)


async def test_connection_lost_drops_closed_loop_to_advisory(tmp_path: Path, influxd: Any,
                                                            simulator_factory: Any) -> None:
    sim = simulator_factory(args=sim_args(120, 2, start_time_in_past(12)))
    cfg = twin_config(tmp_path, influxd, sim, cathode_only=True)
    svc = TwinService(cfg, mqtt=False)
    await svc.start()
    try:
        deadline = time.monotonic() + 90
        while True:  # engage once the calender has produced a good density
            try:
                await svc.controller.set_mode("closed_loop", ENGINEER, "fault test")
                break
            except Exception:  # noqa: BLE001 - not trustworthy yet
                assert time.monotonic() < deadline, svc.controller.last_refusal
                await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        assert svc.controller.mode == "closed_loop"
        writes_before = svc.controller.counts["writes"]
        sim.kill()
        await wait_for(lambda: svc.controller.mode == "advisory", 30, "fallback after the server died")
        assert svc.alarms.is_active("connector_down", "opcua") or any(
            a.kind == "write_refused" for a in svc.alarms.list())
        assert any(e.action == "fallback" for e in svc.audit.list())
        await asyncio.sleep(3)
        assert svc.controller.counts["writes"] == writes_before
        sim.start()
        await wait_for(lambda: svc._connector_states().get("opcua") is True, 60, "OPC UA reconnect")
        await wait_for(lambda: not svc.alarms.is_active("connector_down", "opcua"), 10, "alarm cleared")
        await asyncio.sleep(2)
        assert svc.controller.mode == "advisory"  # never re-engaged by itself
    finally:
        await svc.stop()
