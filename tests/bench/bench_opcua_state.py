"""The OPC UA connector's subscription state file: writes and bytes per watchdog tick, on this machine.

Prints one JSON object. The connector runs against the simulator under the ingest benchmark's load (``--speed 60
--tick 5 --profile-points 1000 --profile-array``), with a sink that acknowledges at once, in two phases of the same
run: ``flowing`` (data arrives, trace IDs change) and ``paused`` (the sink has no room: backpressure, nothing
arrives, as while the database is down and the spool full). The baseline is the previous policy, measured in the
same run: one full write per watchdog tick (``ticks`` x the mean size of a write). CPU seconds of this process per
phase are printed too (the connector is all this process runs besides the event loop).

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_opcua_state.py --override-ini addopts=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from connectors.opcua import Ack, OpcuaConnector
from deploy.localstack import Simulator
from tests.simline import sim_opcua

SIM_ARGS = ["--security", "none", "--speed", "60", "--tick", "5", "--profile-points", "1000", "--profile-array"]
PHASE_S = 10.0
TICK_S = 1.0  # opcua.watchdog_interval_s default


async def _run(endpoint: str, state: Path) -> dict[str, Any]:
    room = [True]

    def sink(records: Any, ack: Ack | None) -> bool:
        if not room[0]:
            return False
        if ack is not None:
            ack()
        return True

    c = OpcuaConnector(sim_opcua(endpoint=endpoint, watchdog_interval_s=TICK_S), "PL1", sink, state_file=state,
                       ready=lambda: room[0])
    await c.start()
    out: dict[str, Any] = {}
    try:
        assert await c.wait_connected(60), c.status()
        await asyncio.sleep(3.0)  # warm-up: the first subscription's state
        for phase in ("flowing", "paused"):
            room[0] = phase == "flowing"
            await asyncio.sleep(1.0 if phase == "paused" else 0.0)  # the last message before the pause settles
            s0, cpu0, t0 = c.status(), os.times(), time.monotonic()
            await asyncio.sleep(PHASE_S)
            s1, cpu1, dt = c.status(), os.times(), time.monotonic() - t0
            writes = s1["state_writes"] - s0["state_writes"]
            nbytes = s1["state_bytes"] - s0["state_bytes"]
            ticks = round(dt / TICK_S)
            mean = s1["state_bytes"] / max(1, s1["state_writes"])
            out[phase] = {
                "seconds": round(dt, 1), "watchdog_ticks": ticks, "writes": writes, "bytes": nbytes,
                "baseline_writes": ticks, "baseline_bytes": round(ticks * mean),
                "cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
                "paused": s1["paused"], "samples": s1["samples"] - s0["samples"],
            }
    finally:
        await c.stop()
    return out


def test_bench_opcua_state(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim", None, SIM_ARGS)
    sim.start()
    try:
        out = asyncio.run(_run(sim.endpoint, tmp_path / "opcua-subscription.json"))
    finally:
        sim.stop()
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    assert out["paused"]["paused"], out
