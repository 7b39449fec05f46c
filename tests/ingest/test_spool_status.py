"""The spool's state in the twin's typed status, against a real influxd that is killed and started again.

Issue 10 item 5: ``/ready`` answered 200 for 40 s of a 45 s database outage (it read a field that does not exist)
and ``twin_spool_bytes`` stayed 0 while the spool held 4 MB. Item 1: a full spool must show in ``/ready``,
``/metrics`` and an alarm. Renovation issue: audit lines were appended from the event loop, under the spool's lock,
and a full spool made the audit sink fail (the entry never reached the database).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from connectors.records import Sample
from tests.ingest.conftest import influx_rows, until
from twin.config import load_config
from twin.service import TwinService

BUDGET = 65_536


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))



def samples(t0: int, start: int, n: int) -> list[Sample]:
    return [Sample(t0 + (start + i) * 1000, "PL1", "Coating/Cathode", "WebSpeed", 1.0 + (start + i) % 50 / 10,
                   "m/min", trace={"roll_id": "CR-C-000001"}) for i in range(n)]


def test_ready_metrics_and_alarm_follow_the_database_and_the_spool(tmp_path: Path, influxd_factory: Any) -> None:
    influx = influxd_factory()
    db = f"status_{uuid.uuid4().hex[:8]}"
    cfg = load_config(None, {
        "PILOTLINE__INFLUX__URL": influx.url, "PILOTLINE__INFLUX__DATABASE": db,
        "PILOTLINE__INFLUX__FLUSH_INTERVAL_S": "0.1", "PILOTLINE__INFLUX__RETRY_MAX_S": "0.5",
        "PILOTLINE__INFLUX__TIMEOUT_S": "2",
        "PILOTLINE__SPOOL__DIR": str(tmp_path / "spool"), "PILOTLINE__SPOOL__MAX_BYTES": str(BUDGET),
        "PILOTLINE__QUARANTINE__DIR": str(tmp_path / "quarantine"),
        "PILOTLINE__VALIDATION__MAX_FUTURE_S": str(10 * 365 * 86400.0),
        "PILOTLINE__SERVICE__AUTH__TOKEN_FILE": str(tmp_path / "tokens.json"),
        "PILOTLINE__SERVICE__GENEALOGY__ENABLED": "false",
    })
    t0 = time.time_ns() - 10**12
    acked: list[int] = []

    async def go() -> None:
        svc = TwinService(cfg, opcua=False, mqtt=False)
        await svc.start()
        p = svc.pipeline
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://twin")
        try:
            p.submit(samples(t0, 0, 200), lambda: acked.append(200))
            await until(lambda: p.spool.depth_lines == 0 and acked, 20, "first samples stored")
            r = await client.get("/ready")
            assert r.status_code == 200, r.json()

            influx.kill()
            p.submit(samples(t0, 200, 100), lambda: acked.append(100))
            await until(lambda: not p.forwarder.stats.database_up, 20, "the forwarder sees the database down")
            r = await client.get("/ready")
            assert r.status_code == 503 and r.json()["parts"]["database"] is False, r.json()
            m = (await client.get("/metrics")).text
            assert metric(m, "twin_spool_bytes") == p.spool.stats().depth_bytes > 0

            n = 300
            while not p.spool.stats().full:  # fill the budget
                p.submit(samples(t0, n, 300), lambda: acked.append(300))
                n += 300
                await asyncio.sleep(0.1)
            await until(lambda: svc.alarms.is_active("spool_full", "ingest"), 10, "spool_full alarm")
            r = await client.get("/ready")
            assert r.status_code == 503 and r.json()["parts"]["spool"] is False, r.json()
            m = (await client.get("/metrics")).text
            assert metric(m, "twin_spool_full") == 1.0
            assert metric(m, "twin_spool_bytes") == p.spool.stats().depth_bytes
            assert 0 < metric(m, "twin_spool_bytes") <= metric(m, "twin_spool_max_bytes") == BUDGET
            # an audit entry while the spool is full: the event loop does not wait, nothing is lost
            errors_before = svc.audit.sink_errors
            entry = svc.audit.record("mode", "tester", "audit during a full spool")
            assert svc.audit.sink_errors == errors_before

            influx.start()
            await until(lambda: p.spool.depth_lines == 0 and not p.spool.stats().full and p._inbox_records == 0,
                        60, "drained after the outage")
            await until(lambda: not svc.alarms.is_active("spool_full", "ingest"), 10, "spool_full alarm cleared")
            await until(lambda: p.forwarder.stats.database_up, 20, "database up")
            r = await client.get("/ready")
            assert r.status_code == 200, r.json()
            assert metric((await client.get("/metrics")).text, "twin_spool_bytes") == 0
            rows = influx_rows(influx.url, db, 'SELECT "why" FROM "twin_audit"')
            assert [x["why"] for x in rows if x.get("why") == entry.why] == [entry.why]
            stored = influx_rows(influx.url, db, 'SELECT count("value") FROM "Coating"')
            assert stored[0]["count"] == n
        finally:
            await client.aclose()
            await svc.stop()

    asyncio.run(go())
