"""The subscription state file is written when what it holds changed, not on every watchdog tick (issue 11: it was
rewritten every second, also while nothing arrived). Checked while the connector pauses for backpressure: no
message, no acknowledgement, no new trace ID, so no write; then data flows again and it is written again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.opcua import Ack, OpcuaConnector
from tests.ingest.conftest import FAST_LINE
from tests.simline import sim_opcua


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns  # written = replaced by a new file (tmp + rename)


async def test_state_file_is_not_rewritten_while_nothing_changes(tmp_path: Path, simulator_factory: Any) -> None:
    sim = await asyncio.to_thread(simulator_factory, ["--security", "none", "--speed", "40", "--tick", "1",
                                                      "--scenario", str(FAST_LINE)])
    room = [True]
    taken = [0]

    def sink(records: Sequence[Any], ack: Ack | None) -> bool:
        if not room[0]:
            return False
        taken[0] += 1
        if ack is not None:
            ack()
        return True

    state = tmp_path / "opcua-subscription.json"
    cfg = sim_opcua(endpoint=sim.endpoint, watchdog_interval_s=0.2, stale_after_s=3.0, request_timeout_s=3.0)
    c = OpcuaConnector(cfg, "PL1", sink, state_file=state, ready=lambda: room[0])
    await c.start()
    try:
        assert await c.wait_connected(30), c.status()
        for _ in range(100):
            if taken[0] > 5 and state.exists():
                break
            await asyncio.sleep(0.1)
        assert state.exists() and json.loads(state.read_text())["durable"], "state not saved with data flowing"
        room[0] = False  # the pipeline is full: the connector stops asking for messages
        for _ in range(100):
            if c.status()["paused"]:
                break
            await asyncio.sleep(0.05)
        assert c.status()["paused"], c.status()
        await asyncio.sleep(1.0)  # the last message before the pause is held back; its state written (or not)
        before = _stamp(state)
        await asyncio.sleep(2.0)  # ten watchdog ticks with nothing new
        assert _stamp(state) == before, "the state file was rewritten while nothing changed"
        room[0] = True
        for _ in range(100):
            if _stamp(state) != before:
                break
            await asyncio.sleep(0.1)
        assert _stamp(state) != before, "the state file is not written again once data flows"
        assert c.status()["lost_at_source"] == 0, c.status()
    finally:
        await c.stop()
        await asyncio.to_thread(sim.stop)
