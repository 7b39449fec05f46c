"""OPC UA history backfill with real processes: a gap that no subscription can bring back is read from the server's
history, and every value the simulator recorded is in InfluxDB exactly once, with the trace IDs of its time.

Both faults leave the connector with a *new* subscription (nothing to transfer), so without the backfill the values
the simulator published in the gap are lost (``opcua.history_backfill: false`` loses them; the checker counts them):

1. the ingest process is killed and stays away longer than its session (``session_timeout_s`` 1 s): the restarted
   process cannot resume the session, creates a new subscription, and the server's in-memory history has the gap;
2. the ingest process is killed, the simulator goes on publishing, then stops and starts again (line time carries on)
   with its history in SQLite: the values published before its restart are only in that file.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.opcua import OpcuaConnector
from connectors.opcua import backfill as bf
from connectors.records import Sample
from connectors.settings import OpcuaConfig
from tests.faults.checker import Report, Run, check_opcua
from tests.ingest.conftest import FAST_LINE, influx_rows, ingest_config, read_record, wait_until

SPEED, TICK_S = 20, 1


def _sim_args(record: Path, start: datetime, history_db: Path | None) -> list[str]:
    args = ["--security", "none", "--speed", str(SPEED), "--tick", str(TICK_S), "--scenario", str(FAST_LINE),
            "--record", str(record), "--start-time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "--historize"]
    return args + (["--history-db", str(history_db)] if history_db else [])


def _config(tmp: Path, influx_url: str, db: str, sim: Any) -> Path:
    # a session the server forgets 1 s after the cut: the restarted ingest cannot take its subscription over. The
    # simulator's line description logs in as its operator: the password is in the simulator's data directory
    password = (sim.data_dir / "operator-password").read_text().strip()
    return ingest_config(tmp, influx_url=influx_url, database=db, opcua_endpoint=sim.endpoint, mqtt_url=None,
                         client_id=f"ingest-{db}", opcua={"session_timeout_s": 1.0, "password": password})


def _opcua(ingest: Any) -> dict[str, Any]:
    return ingest.status().get("opcua") or {}


def _drained(ingest: Any) -> bool:
    st = ingest.status()
    return st["spool"]["depth_lines"] == 0 and st["inbox_records"] == 0


def _check(runs: list[Run], influx_url: str, db: str) -> Report:
    report = Report()
    check_opcua(runs, influx_rows(influx_url, db, "SELECT * FROM /.*/"), report)
    print(report.summary())
    return report


def test_ingest_away_longer_than_its_session_backfills_the_gap(tmp_path: Path, influxd: Any, simulator_factory: Any,
                                                                ingest_factory: Any) -> None:
    record = tmp_path / "record.jsonl"
    sim = simulator_factory(args=_sim_args(record, datetime.now(tz=UTC).replace(microsecond=0), None))
    ingest = ingest_factory(_config(tmp_path, influxd.url, "backfill_session", sim))
    wait_until(lambda: _opcua(ingest).get("connected") and ingest.status()["counts"]["stored"] > 300, 30,
               what="first samples stored")
    time.sleep(1.0)
    ingest.kill()
    time.sleep(3.0)  # ~60 line seconds published while no session of ours exists; the session expires
    ingest.start()
    wait_until(lambda: _opcua(ingest).get("backfilled", 0) > 0, 20, what="values backfilled")
    time.sleep(2.0)
    sim.stop()  # graceful: the record is complete
    wait_until(lambda: _drained(ingest), 30, 0.2, "spool drained")
    st = _opcua(ingest)
    ingest.stop()
    assert st["resumed"] == 0, f"the subscription was taken over (no gap to fill): {st}"
    report = _check([Run(read_record(record), "stopped", TICK_S)], influxd.url, "backfill_session")
    assert report.opcua_checked > 3000, report.summary()
    assert report.clean(), report.summary()


def test_simulator_restart_with_sqlite_history_backfills_what_it_published_before(
        tmp_path: Path, influxd: Any, simulator_factory: Any, ingest_factory: Any) -> None:
    rec1, rec2, history = tmp_path / "record1.jsonl", tmp_path / "record2.jsonl", tmp_path / "history.sqlite"
    sim = simulator_factory(args=_sim_args(rec1, datetime.now(tz=UTC).replace(microsecond=0), history))
    ingest = ingest_factory(_config(tmp_path, influxd.url, "backfill_restart", sim))
    wait_until(lambda: _opcua(ingest).get("connected") and ingest.status()["counts"]["stored"] > 300, 30,
               what="first samples stored")
    time.sleep(1.0)
    ingest.kill()
    time.sleep(2.0)  # the server goes on publishing: these values exist only in its history after its restart
    sim.stop()
    last_t = max(int(line.split('"t_ns":')[1].split(",")[0]) for line in rec1.read_text().splitlines() if line)
    sim.args = _sim_args(rec2, datetime.fromtimestamp(last_t / 1e9, tz=UTC) + timedelta(seconds=TICK_S), history)
    sim.start()
    ingest.start()
    wait_until(lambda: _opcua(ingest).get("backfilled", 0) > 0, 20, what="values backfilled")
    time.sleep(2.0)
    sim.stop()
    wait_until(lambda: _drained(ingest), 30, 0.2, "spool drained")
    st = _opcua(ingest)
    ingest.stop()
    assert st["resumed"] == 0, st
    report = _check([Run(read_record(rec1), "stopped", TICK_S), Run(read_record(rec2), "stopped", TICK_S)],
                    influxd.url, "backfill_restart")
    assert report.opcua_checked > 3000, report.summary()
    assert report.clean(), report.summary()



async def test_pages_and_the_per_node_bound(tmp_path: Path, simulator_factory: Any, monkeypatch: Any) -> None:
    """Tiny pages (3 values per node, 2 nodes per request): asyncua's server ends a page without a continuation point,
    so every node is read again from its last time, and the gap still arrives complete, each value with one set of
    trace IDs (a value handed over again after the connector's stop, whose last marks the state file may not have,
    is the same point to InfluxDB). Then a second gap with ``history_backfill_max_values`` 2: at most 2 values per
    node are read back."""
    monkeypatch.setattr(bf, "VALUES_PER_READ", 3)
    monkeypatch.setattr(bf, "VALUES_PER_REQUEST", 6)
    record = tmp_path / "record.jsonl"
    start = datetime.now(tz=UTC).replace(microsecond=0)
    sim = await asyncio.to_thread(simulator_factory, _sim_args(record, start, None))
    state = tmp_path / "opcua-subscription.json"
    got: list[list[tuple[str, int]]] = []  # per session: (node, time) of every sample handed to the sink
    tags: dict[tuple[str, int], set[tuple[Any, ...]]] = {}

    def sink(records: Any, ack: Any) -> bool:
        for r in records:
            if isinstance(r, Sample):
                got[-1].append((r.source, r.time_ns))
                tags.setdefault((r.source, r.time_ns), set()).add(tuple(sorted(r.trace.items())))
        if ack is not None:
            ack()
        return True

    async def session(max_values: int) -> OpcuaConnector:
        got.append([])
        state.with_name(state.stem + "-session.json").unlink(missing_ok=True)  # no session to resume: a new one
        cfg = OpcuaConfig(endpoint=sim.endpoint, watchdog_interval_s=0.3, history_backfill_max_values=max_values)
        c = OpcuaConnector(cfg, "PL1", sink, state_file=state)
        await c.start()
        try:
            assert await c.wait_connected(30)
            await asyncio.sleep(2.0)
            while c.backfill.running:
                await asyncio.sleep(0.05)
        finally:
            await c.stop()
        return c

    try:
        await session(100_000)
        await asyncio.sleep(1.5)  # ~30 line seconds without a subscription
        second = await session(100_000)
        await asyncio.sleep(1.5)
        third = await session(2)
    finally:
        await asyncio.to_thread(sim.stop)
    assert second.status()["backfilled"] > 100, second.status()
    stored = got[0] + got[1]
    twice = {k: v for k, v in tags.items() if len(v) > 1}
    assert not twice, f"values stored under two sets of trace IDs: {list(twice.items())[:3]}"
    recorded: dict[str, list[int]] = {}
    for line in record.read_text().splitlines():
        r = json.loads(line)
        if r["source"].startswith("opcua:"):
            recorded.setdefault(r["source"].removeprefix("opcua:"), []).append(int(r["t_ns"]))
    have = set(stored)
    last_stored = max(t for _, t in got[1])
    for node, times in recorded.items():
        mine = [t for n, t in have if n == node]
        if mine:  # from its first stored value on, until the second session stopped: nothing missing
            missing = [t for t in times if min(mine) <= t <= last_stored - 10**9 * 5 and (node, t) not in have]
            assert not missing, (node, len(missing), missing[:3])
    first = third.backfill._first  # the third subscription's first value per node: what is older came from history
    back: dict[str, int] = {}
    for node, t in got[2]:
        if first.get(node) is not None and t < first[node]:  # type: ignore[operator]
            back[node] = back.get(node, 0) + 1
    assert back and max(back.values()) <= 2, back
    assert third.status()["backfilled"] == sum(back.values()), (third.status(), back)
