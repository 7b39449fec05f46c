"""OPC UA history backfill: values read back per second after a new subscription, on this machine.

Prints one JSON object. The simulator historises its analog and ID nodes in SQLite (``--historize --history-db``)
under load (``--speed 60 --tick 5 --profile-points 100``: ~330 nodes). A connector with a sink that acknowledges at
once runs ``LIVE_S`` seconds: the baseline is its live path's values per second in the same run (bounded by what the
simulator publishes). Then it stops, the line runs ``GAP_S`` seconds without it, and a new connector starts from the
same state file without the session (a new subscription, as after a session expired or a server restart): the
figure is the values the backfill read from the history and handed to the sink, per second of the backfill (from
the connection to the end of the backfill, the wait for the subscription's first values included).

Also the cost of ``--historize`` to the simulator: OPC UA values it publishes per second flat out (``--speed 10000
--duration 1500``, no client) without history, with the in-memory history and with the SQLite history.

Run: ``.venv/bin/python -m pytest -s tests/bench/bench_opcua_backfill.py --override-ini addopts=``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from connectors.opcua import Ack, OpcuaConnector
from deploy.localstack import Simulator, free_port
from tests.simline import sim_opcua

LIVE_S = 8.0
GAP_S = 10.0


def _sink(records: Any, ack: Ack | None) -> bool:
    if ack is not None:
        ack()
    return True


async def _run(sim: Simulator, state: Path) -> dict[str, Any]:
    # the simulator's source as its line description has it (trace nodes, its operator's login), at the library's
    # 100 ms publishing interval: at the description's 20 ms this load (~420 nodes, 60x, SQLite history) is more
    # than the simulator's server keeps up with on 2 shared cores, live path alone (requests time out)
    password = (sim.data_dir / "operator-password").read_text().strip()
    cfg = sim_opcua(endpoint=sim.endpoint, password=password, watchdog_interval_s=0.5, subscription_interval_ms=100.0)
    live = OpcuaConnector(cfg, "PL1", _sink, state_file=state)
    await live.start()
    try:
        assert await live.wait_connected(60), live.status()
        await asyncio.sleep(2.0)  # the initial values are not the steady flow
        s0, t0 = live.status()["samples"], time.monotonic()
        await asyncio.sleep(LIVE_S)
        s1, dt = live.status()["samples"], time.monotonic() - t0
    finally:
        await live.stop()
    await asyncio.sleep(GAP_S)
    state.with_name(state.stem + "-session.json").unlink(missing_ok=True)  # no session to resume: a new subscription
    after = OpcuaConnector(cfg, "PL1", _sink, state_file=state)
    t_start = time.monotonic()
    await after.start()
    try:
        assert await after.wait_connected(60), after.status()
        while not after.backfill.runs or after.backfill.running:
            await asyncio.sleep(0.01)
            assert time.monotonic() - t_start < 300, after.status()
        took = time.monotonic() - t_start
        st = after.status()
    finally:
        await after.stop()
    return {
        "live": {"seconds": round(dt, 1), "values": s1 - s0, "values_per_s": round((s1 - s0) / dt)},
        "backfill": {"gap_s": GAP_S, "nodes": st["nodes"], "values": st["backfilled"], "seconds": round(took, 2),
                     "values_per_s": round(st["backfilled"] / took)},
    }


def _simulator_rate(tmp: Path, extra: list[str]) -> int:
    """OPC UA values per second the simulator publishes flat out (its own figure, printed when it stops)."""
    out = subprocess.run([sys.executable, "-m", "simulator", "--security", "none", "--port", str(free_port()),
                          "--speed", "10000", "--duration", "1500", "--data-dir", str(tmp), *extra],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    m = re.search(r"OPC UA values \((\d+)/s\)", out)
    assert m, out
    return int(m.group(1))


def test_bench_opcua_backfill(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim", None, ["--security", "none", "--speed", "60", "--tick", "5",
                                             "--profile-points", "100", "--historize", "--history-db",
                                             str(tmp_path / "history.sqlite")])
    sim.start()
    try:
        out = asyncio.run(_run(sim, tmp_path / "opcua-subscription.json"))
    finally:
        sim.stop()
    out["simulator_values_per_s"] = {
        "no_history": _simulator_rate(tmp_path / "r0", []),
        "history_in_memory": _simulator_rate(tmp_path / "r1", ["--historize"]),
        "history_sqlite": _simulator_rate(tmp_path / "r2", ["--historize", "--history-db", str(tmp_path / "r2.db")]),
    }
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    assert out["backfill"]["values"] > 0, out
