"""A network cut between ingest and the OPC UA server: the connector resumes its session, takes its subscription over
and gets every value the server published meanwhile (compared with the simulator's record)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from connectors.opcua import OpcuaConnector
from connectors.records import Sample
from deploy.localstack import free_port
from tests.simline import sim_opcua


class CuttableProxy:
    """TCP relay on loopback whose connections can be cut (and new ones refused) like a pulled cable."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.base_events.Server | None = None
        self.links: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.links += [writer, up_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.links:
            with contextlib.suppress(Exception):
                w.transport.abort()
        self.links.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()


async def test_network_cut_loses_nothing(tmp_path: Path, simulator_factory: Any) -> None:
    record = tmp_path / "record.jsonl"
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none", "--speed", "20", "--tick", "1",
                                                      "--record", str(record)])
    proxy = CuttableProxy(sim.port)
    await proxy.start()
    got: list[Sample] = []
    cfg = sim_opcua(endpoint=f"opc.tcp://127.0.0.1:{proxy.port}", reconnect_initial_s=0.2, reconnect_max_s=1.0,
                      watchdog_interval_s=0.3, request_timeout_s=1.0, stale_after_s=2.0)
    c = OpcuaConnector(cfg, "PL1", lambda recs, ack: (got.extend(r for r in recs if isinstance(r, Sample)),
                                                       ack() if ack else None),
                       state_file=tmp_path / "opcua-subscription.json")
    await c.start()
    try:
        assert await c.wait_connected(30)
        await asyncio.sleep(2.0)
        await proxy.cut()
        await asyncio.sleep(3.0)  # 60 simulated seconds of values pile up in the server's queues
        assert not c.status()["connected"]
        await proxy.restore()
        for _ in range(100):
            if c.status()["connected"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        st = c.status()
    finally:
        await c.stop()
        await proxy.close()
        await asyncio.to_thread(sim.stop)
    assert st["connected"] and st["reconnects"] >= 1 and st["resumed"] >= 1, st
    received = {(s.source.split(";s=", 1)[1], s.time_ns) for s in got}
    recorded = [json.loads(x) for x in record.read_text().splitlines() if x.strip()]
    per_node: dict[str, list[int]] = {}
    for r in recorded:
        if r["source"].startswith("opcua:"):
            per_node.setdefault(r["source"].split(";s=", 1)[1], []).append(int(r["t_ns"]))
    last = max(t for _, t in received)
    expected: set[tuple[str, int]] = set()
    for node, times in per_node.items():
        seen = [t for t in times if (node, t) in received]
        if seen:  # from the first value our subscription delivered to the end of what we listened to
            expected |= {(node, t) for t in times if min(seen) <= t <= last - 5 * 10**9}
    missing = expected - received
    assert len(expected) > 1000
    assert not missing, f"{len(missing)} of {len(expected)} values lost over the cut, e.g. {sorted(missing)[:3]}"
