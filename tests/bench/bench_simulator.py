"""How many values per second the simulator publishes over OPC UA, and how many one asyncua client receives.

Run: ``.venv/bin/python -m pytest -q -s tests/bench/bench_simulator.py --override-ini addopts=`` (or ``make bench``).
Prints one JSON object per configuration; the first configuration (defaults: --speed 1) is the baseline measured in
the same run. A subscriber takes every variable of the line (all stations, both lanes, the cross-web tracks) in one
subscription with a 100 ms publishing interval, as an ingest connector would.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from deploy.localstack import Simulator
from simulator.spec import line_specs

WINDOW_S = 8.0
CONFIGS: list[tuple[str, list[str], int, bool]] = [
    ("baseline: --speed 1", ["--speed", "1"], 0, False),
    ("--speed 60", ["--speed", "60"], 0, False),
    ("--speed 60 --profile-points 100", ["--speed", "60", "--profile-points", "100"], 100, False),
    ("--speed 60 --profile-points 200", ["--speed", "60", "--profile-points", "200"], 200, False),
    ("--speed 60 --profile-points 200 --profile-array",
     ["--speed", "60", "--profile-points", "200", "--profile-array"], 200, True),
    ("--speed 120 --profile-points 200 --profile-array",
     ["--speed", "120", "--profile-points", "200", "--profile-array"], 200, True),
]


async def _measure(endpoint: str, profile_points: int, profile_array: bool) -> dict[str, Any]:
    received = 0

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            nonlocal received
            received += len(val) if isinstance(val, list) else 1

    async with Client(endpoint, timeout=30) as client:
        ns = await client.get_namespace_index("urn:pilotline:simulator")
        nodes = [client.get_node(ua.NodeId(s.node_id, ns)) for s in line_specs(16, profile_points, profile_array)]
        sub = await client.create_subscription(100, Handler())
        for i in range(0, len(nodes), 500):
            await sub.subscribe_data_change(nodes[i:i + 500], queuesize=100)
        await asyncio.sleep(9.0)  # let the web reach every gauge (7 m at 1 m/min = 420 s simulated at speed >= 60)
        start, t0 = received, time.monotonic()
        await asyncio.sleep(WINDOW_S)
        got = received - start
        wall = time.monotonic() - t0
        await sub.delete()
    return {"nodes_subscribed": len(nodes), "client_values_per_s": round(got / wall)}


@pytest.mark.timeout(600)
def test_simulator_throughput(tmp_path: Path) -> None:
    results = []
    for name, args, pp, array in CONFIGS:
        sim = Simulator(tmp_path / re.sub(r"\W+", "_", name), None, ["--security", "none", *args])
        sim.start()
        try:
            t0 = time.monotonic()
            measured = asyncio.run(_measure(sim.endpoint, pp, array))
            elapsed = time.monotonic() - t0
        finally:
            sim.stop()
        stats = re.findall(r"stopped after (\d+) steps .* in ([\d.]+) s wall: (\d+) steps/s, (\d+) OPC UA values "
                           r"\((\d+)/s\)", sim.log_path.read_text())
        steps, wall, steps_s, values, values_s = stats[-1]
        row = {"config": name, **measured, "server_values_per_s_avg": int(values_s), "server_steps_per_s": int(steps_s),
               "run_wall_s": round(elapsed, 1)}
        results.append(row)
        print(json.dumps(row))
    print(json.dumps({"benchmark": "simulator_throughput", "baseline": results[0], "results": results[1:]}))
    assert all(r["client_values_per_s"] > 0 for r in results)
